package ctl

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

var budgetPeriods = map[string]adminv1.BudgetPeriod{
	"day":   adminv1.BudgetPeriod_BUDGET_PERIOD_DAY,
	"month": adminv1.BudgetPeriod_BUDGET_PERIOD_MONTH,
	"total": adminv1.BudgetPeriod_BUDGET_PERIOD_TOTAL,
}

var contentRetentions = map[string]adminv1.ContentRetention{
	"none":     adminv1.ContentRetention_CONTENT_RETENTION_NONE,
	"metadata": adminv1.ContentRetention_CONTENT_RETENTION_METADATA,
	"full":     adminv1.ContentRetention_CONTENT_RETENTION_FULL,
}

func (c *cli) policyCmd() *cobra.Command {
	return resource("policy", "policies", "Manage the limits and data rules of a tenant or key",
		c.policyGet(), c.policySet(), c.policyDelete(), c.policyList(), c.policyStatus())
}

func (c *cli) policies() (adminv1.PolicyServiceClient, error) {
	conn, err := c.connect()
	if err != nil {
		return nil, err
	}
	return adminv1.NewPolicyServiceClient(conn), nil
}

// targetFlags name what a policy is attached to: a tenant or a key, never
// both, since the API's target is a oneof.
type targetFlags struct{ tenant, key string }

func (tf *targetFlags) register(f *pflag.FlagSet) {
	f.StringVar(&tf.tenant, "tenant", "", "the tenant's policy (slug or id)")
	f.StringVar(&tf.key, "key", "", "the key's policy (key id)")
}

func (tf *targetFlags) target() (*adminv1.PolicyTarget, error) {
	switch {
	case tf.tenant != "" && tf.key != "":
		return nil, usagef("give --tenant or --key, not both")
	case tf.tenant != "":
		return &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_Tenant{Tenant: tf.tenant}}, nil
	case tf.key != "":
		return &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_KeyId{KeyId: tf.key}}, nil
	}
	return nil, usagef("give --tenant or --key")
}

func formatTarget(t *adminv1.PolicyTarget) string {
	switch x := t.GetTarget().(type) {
	case *adminv1.PolicyTarget_Tenant:
		return "tenant:" + x.Tenant
	case *adminv1.PolicyTarget_KeyId:
		return "key:" + x.KeyId
	}
	return ""
}

// parseBudget reads PERIOD:hard=AMOUNT[,soft=AMOUNT], amounts as in
// parseMicros.
func parseBudget(spec string) (*adminv1.Budget, error) {
	bad := func(why string) error {
		return fmt.Errorf("invalid --budget %q: %s; want day|month|total:hard=AMOUNT[,soft=AMOUNT]", spec, why)
	}
	period, limits, ok := strings.Cut(spec, ":")
	if !ok {
		return nil, bad("no period")
	}
	p, ok := budgetPeriods[period]
	if !ok {
		return nil, bad("unknown period " + strconv.Quote(period))
	}
	b := &adminv1.Budget{Period: p}
	for part := range strings.SplitSeq(limits, ",") {
		k, v, _ := strings.Cut(part, "=")
		var dst **int64
		switch k {
		case "hard":
			dst = &b.HardLimitMicros
		case "soft":
			dst = &b.SoftLimitMicros
		default:
			return nil, bad("unknown limit " + strconv.Quote(k))
		}
		if *dst != nil {
			return nil, bad(k + " given twice")
		}
		m, err := parseMicros(v)
		if err != nil {
			return nil, bad(err.Error())
		}
		*dst = &m
	}
	return b, nil
}

func formatBudget(b *adminv1.Budget) string {
	var limits []string
	if b.HardLimitMicros != nil {
		limits = append(limits, "hard="+formatMicros(b.GetHardLimitMicros()))
	}
	if b.SoftLimitMicros != nil {
		limits = append(limits, "soft="+formatMicros(b.GetSoftLimitMicros()))
	}
	return enumName(b.GetPeriod(), "BUDGET_PERIOD_") + ":" + strings.Join(limits, ",")
}

func formatBudgets(bs []*adminv1.Budget) string {
	out := make([]string, 0, len(bs))
	for _, b := range bs {
		out = append(out, formatBudget(b))
	}
	return strings.Join(out, " ")
}

func optional(v *int64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatInt(*v, 10)
}

// policyTable shows one policy as SETTING/VALUE rows, named after the flags
// of `policy set`, because a policy has too many settings for one row. "-"
// means unset: inherited from the tenant, or unlimited.
func policyTable(t *table, p *adminv1.Policy) {
	if p == nil {
		// Presence of the optional limits is read from the fields, which
		// unlike the getters do not tolerate a nil policy.
		p = &adminv1.Policy{}
	}
	days := func(n int32) string {
		if n == 0 {
			return ""
		}
		return itoa(n)
	}
	t.row("SETTING", "VALUE")
	t.row("target", formatTarget(p.GetTarget()))
	t.row("rpm", optional(p.RequestsPerMinute))
	t.row("tpm", optional(p.TokensPerMinute))
	t.row("concurrency", optional(p.ConcurrentRequests))
	t.row("max-output-tokens", optional(p.MaxOutputTokens))
	t.row("clamp-output-tokens", yesNo(p.GetClampOutputTokens()))
	t.row("budget", formatBudgets(p.GetBudgets()))
	t.row("allow-models", strings.Join(p.GetAllowedModels(), ","))
	t.row("deny-models", strings.Join(p.GetDeniedModels(), ","))
	t.row("allow-providers", strings.Join(p.GetAllowedProviders(), ","))
	t.row("deny-providers", strings.Join(p.GetDeniedProviders(), ","))
	t.row("allow-cidrs", strings.Join(p.GetAllowedCidrs(), ","))
	t.row("retention", enumName(p.GetContentRetention(), "CONTENT_RETENTION_"))
	t.row("retention-days", days(p.GetContentRetentionDays()))
	t.row("usage-retention-days", days(p.GetUsageRetentionDays()))
	t.row("require-no-training", yesNo(p.GetRequireNoTraining()))
	t.row("require-zero-retention", yesNo(p.GetRequireZeroRetention()))
	t.row("allow-provider-storage", yesNo(p.GetAllowProviderStorage()))
	t.row("redact", yesNo(p.GetRedact()))
	t.row("updated", timestamp(p.GetUpdateTime()))
}

func policyListTable(t *table, ps ...*adminv1.Policy) {
	t.row("TARGET", "RPM", "TPM", "CONCURRENCY", "MAX_OUTPUT", "BUDGETS", "RETENTION", "UPDATED")
	for _, p := range ps {
		if p == nil {
			p = &adminv1.Policy{}
		}
		t.row(formatTarget(p.GetTarget()), optional(p.RequestsPerMinute), optional(p.TokensPerMinute),
			optional(p.ConcurrentRequests), optional(p.MaxOutputTokens), formatBudgets(p.GetBudgets()),
			enumName(p.GetContentRetention(), "CONTENT_RETENTION_"), timestamp(p.GetUpdateTime()))
	}
}

const policyTargetNote = `Give --tenant for a tenant's policy or --key for a key's. Where a tenant and
its key both set a limit, the stricter one applies.`

func (c *cli) policyGet() *cobra.Command {
	var tf targetFlags
	cmd := &cobra.Command{
		Use:   "get --tenant T | --key ID",
		Short: "Show the policy of a tenant or key",
		Long:  "Show the policy of a tenant or key. " + policyTargetNote,
		Example: `  tollgatectl policy get --tenant acme
  tollgatectl policy get --key 5f1d7c1e-8f0a-4b8e-9a57-2d6c0a3e9b11 -o json`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			target, err := tf.target()
			if err != nil {
				return err
			}
			client, err := c.policies()
			if err != nil {
				return err
			}
			resp, err := client.GetPolicy(cmd.Context(), &adminv1.GetPolicyRequest{Target: target})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { policyTable(t, resp.GetPolicy()) })
		}),
	}
	tf.register(cmd.Flags())
	return cmd
}

// policyPaths maps each `policy set` flag to the Policy field it changes.
var policyPaths = []flagPath{
	{"rpm", "requests_per_minute"},
	{"tpm", "tokens_per_minute"},
	{"concurrency", "concurrent_requests"},
	{"max-output-tokens", "max_output_tokens"},
	{"clamp-output-tokens", "clamp_output_tokens"},
	{"budget", "budgets"},
	{"allow-models", "allowed_models"},
	{"deny-models", "denied_models"},
	{"allow-providers", "allowed_providers"},
	{"deny-providers", "denied_providers"},
	{"allow-cidrs", "allowed_cidrs"},
	{"retention", "content_retention"},
	{"retention-days", "content_retention_days"},
	{"usage-retention-days", "usage_retention_days"},
	{"require-no-training", "require_no_training"},
	{"require-zero-retention", "require_zero_retention"},
	{"allow-provider-storage", "allow_provider_storage"},
	{"redact", "redact"},
}

func (c *cli) policySet() *cobra.Command {
	var tf targetFlags
	var rpm, tpm, concurrency, maxOutput optionalInt
	var budgets []string
	var retention string
	p := &adminv1.Policy{}
	cmd := &cobra.Command{
		Use:   "set --tenant T | --key ID [settings]",
		Short: "Change settings in the policy of a tenant or key",
		Long: "Change settings in the policy of a tenant or key, creating it if needed. " + policyTargetNote + `

Only the settings given are changed. A limit set to "none" is removed (the key
then inherits its tenant's; a tenant is then unlimited). Lists take
comma-separated values and "" empties them; boolean settings take
--flag=false to turn off. --budget replaces every budget and may be repeated,
once per period; --budget none removes them all. Amounts are micro-dollars
(100000000) or dollars ('$100').`,
		Example: `  tollgatectl policy set --tenant acme --rpm 600 --tpm 200000 --budget 'month:hard=$500,soft=$400'
  tollgatectl policy set --key 5f1d7c1e-8f0a-4b8e-9a57-2d6c0a3e9b11 --allow-models gpt-4o-mini --max-output-tokens 1024 --clamp-output-tokens
  tollgatectl policy set --tenant acme --retention none --require-zero-retention --redact
  tollgatectl policy set --tenant acme --rpm none`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			target, err := tf.target()
			if err != nil {
				return err
			}
			mask, err := updateMask(f, policyPaths)
			if err != nil {
				return err
			}
			p.Target = target
			p.RequestsPerMinute, p.TokensPerMinute = rpm.value, tpm.value
			p.ConcurrentRequests, p.MaxOutputTokens = concurrency.value, maxOutput.value
			if p.Budgets, err = parseBudgets(budgets); err != nil {
				return err
			}
			if f.Changed("retention") {
				if p.ContentRetention, err = parseEnum("retention", retention, contentRetentions); err != nil {
					return err
				}
			}
			for _, name := range []string{"retention-days", "usage-retention-days"} {
				v, _ := f.GetInt32(name)
				if err := nonNegative(f, name, v); err != nil {
					return err
				}
			}
			for _, l := range []*[]string{&p.AllowedModels, &p.DeniedModels, &p.AllowedProviders, &p.DeniedProviders, &p.AllowedCidrs} {
				*l = cleanList(*l)
			}
			client, err := c.policies()
			if err != nil {
				return err
			}
			resp, err := client.UpdatePolicy(cmd.Context(), &adminv1.UpdatePolicyRequest{Policy: p, UpdateMask: mask})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { policyTable(t, resp.GetPolicy()) })
		}),
	}
	f := cmd.Flags()
	tf.register(f)
	f.Var(&rpm, "rpm", "requests per minute")
	f.Var(&tpm, "tpm", "input plus output tokens per minute")
	f.Var(&concurrency, "concurrency", "requests in flight at once")
	f.Var(&maxOutput, "max-output-tokens", "largest max-tokens a request may ask for")
	f.BoolVar(&p.ClampOutputTokens, "clamp-output-tokens", false, "lower a larger max-tokens to --max-output-tokens instead of refusing the request")
	f.StringArrayVar(&budgets, "budget", nil, "PERIOD:hard=AMOUNT[,soft=AMOUNT] with PERIOD day, month or total; repeatable; none removes all")
	f.StringSliceVar(&p.AllowedModels, "allow-models", nil, "only these public model names")
	f.StringSliceVar(&p.DeniedModels, "deny-models", nil, "never these public model names")
	f.StringSliceVar(&p.AllowedProviders, "allow-providers", nil, "only these provider names")
	f.StringSliceVar(&p.DeniedProviders, "deny-providers", nil, "never these provider names")
	f.StringSliceVar(&p.AllowedCidrs, "allow-cidrs", nil, "only clients from these networks, e.g. 10.0.0.0/8,2001:db8::/32")
	f.StringVar(&retention, "retention", "", "content kept: none, metadata or full")
	f.Int32Var(&p.ContentRetentionDays, "retention-days", 0, "days request and response bodies are kept with --retention full")
	f.Int32Var(&p.UsageRetentionDays, "usage-retention-days", 0, "days usage records are kept (0 keeps them)")
	f.BoolVar(&p.RequireNoTraining, "require-no-training", false, "route only to providers that do not train on API data")
	f.BoolVar(&p.RequireZeroRetention, "require-zero-retention", false, "route only to deployments with zero data retention")
	f.BoolVar(&p.AllowProviderStorage, "allow-provider-storage", false, "let providers store requests (e.g. OpenAI store=true)")
	f.BoolVar(&p.Redact, "redact", false, "replace personal data in prompts with placeholders before sending")
	return cmd
}

// parseBudgets reads every --budget. The API allows one budget per period;
// checking here names the duplicate before anything is sent.
func parseBudgets(specs []string) ([]*adminv1.Budget, error) {
	if len(specs) == 1 && specs[0] == "none" {
		return nil, nil
	}
	var out []*adminv1.Budget
	seen := map[adminv1.BudgetPeriod]bool{}
	for _, spec := range specs {
		b, err := parseBudget(spec)
		if err != nil {
			return nil, usagef("%v", err)
		}
		if seen[b.GetPeriod()] {
			return nil, usagef("--budget: two budgets for %s; give at most one per period", enumName(b.GetPeriod(), "BUDGET_PERIOD_"))
		}
		seen[b.GetPeriod()] = true
		out = append(out, b)
	}
	return out, nil
}

func (c *cli) policyDelete() *cobra.Command {
	var tf targetFlags
	cmd := &cobra.Command{
		Use:   "delete --tenant T | --key ID",
		Short: "Remove every setting from the policy of a tenant or key",
		Long: `Remove a policy. A key then inherits its tenant's settings; a tenant is then
unlimited.`,
		Example: `  tollgatectl policy delete --key 5f1d7c1e-8f0a-4b8e-9a57-2d6c0a3e9b11`,
		Args:    exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			target, err := tf.target()
			if err != nil {
				return err
			}
			client, err := c.policies()
			if err != nil {
				return err
			}
			resp, err := client.DeletePolicy(cmd.Context(), &adminv1.DeletePolicyRequest{Target: target})
			if err != nil {
				return err
			}
			kind, id, _ := strings.Cut(formatTarget(target), ":")
			return c.printDeleted(resp, "policy of "+kind, id)
		}),
	}
	tf.register(cmd.Flags())
	return cmd
}

func (c *cli) policyList() *cobra.Command {
	var tenant string
	var limit int
	cmd := &cobra.Command{
		Use:     "list --tenant T",
		Short:   "List the policy of a tenant and of each of its keys",
		Example: `  tollgatectl policies list --tenant acme`,
		Args:    exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			if tenant == "" {
				return usagef("--tenant is required")
			}
			client, err := c.policies()
			if err != nil {
				return err
			}
			req := &adminv1.ListPoliciesRequest{Tenant: tenant}
			all, err := collect(cmd.Context(), limit, func(ctx context.Context, size int32, token string) ([]*adminv1.Policy, string, error) {
				req.PageSize, req.PageToken = size, token
				resp, err := client.ListPolicies(ctx, req)
				return resp.GetPolicies(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			return c.print(&adminv1.ListPoliciesResponse{Policies: all}, func(t *table) { policyListTable(t, all...) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant", "", "the tenant's slug or id (required)")
	limitFlag(f, &limit)
	return cmd
}
