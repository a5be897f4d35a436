package ctl

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

func (c *cli) modelCmd() *cobra.Command {
	return resource("model", "models", "Manage public model names, their deployments and prices",
		c.modelList(), c.modelGet(), c.modelCreate(), c.modelUpdate(), c.modelDelete())
}

func (c *cli) models() (adminv1.ModelServiceClient, error) {
	conn, err := c.connect()
	if err != nil {
		return nil, err
	}
	return adminv1.NewModelServiceClient(conn), nil
}

func modelTable(t *table, models ...*adminv1.Model) {
	t.row("ID", "TENANT", "NAME", "CONTEXT", "INPUT/MTOK", "OUTPUT/MTOK", "CACHED/MTOK", "DEPLOYMENTS")
	for _, m := range models {
		in, out, cached := "", "", ""
		if p := m.GetPricing(); p != nil {
			in, out, cached = formatMicros(p.GetInputMicrosPerMtok()), formatMicros(p.GetOutputMicrosPerMtok()), formatMicros(p.GetCachedInputMicrosPerMtok())
		}
		window := ""
		if m.GetContextWindow() > 0 {
			window = itoa(m.GetContextWindow())
		}
		deps := make([]string, 0, len(m.GetDeployments()))
		for _, d := range m.GetDeployments() {
			deps = append(deps, formatDeployment(d))
		}
		t.row(m.GetId(), m.GetTenantId(), m.GetName(), window, in, out, cached, strings.Join(deps, " "))
	}
}

// deploymentSyntax is --deployment's value.
const deploymentSyntax = "provider=ID,upstream=NAME[,weight=N][,priority=N][,no-training=true][,retention=zero|unknown|DAYSd]"

// parseDeployment reads deploymentSyntax. Weight defaults to 1 here rather
// than on the server so the request says what the operator will get.
func parseDeployment(spec string) (*adminv1.Deployment, error) {
	d := &adminv1.Deployment{Weight: 1}
	seen := map[string]bool{}
	for part := range strings.SplitSeq(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("invalid --deployment %q: want %s", spec, deploymentSyntax)
		}
		if seen[k] {
			return nil, fmt.Errorf("invalid --deployment %q: %s given twice", spec, k)
		}
		seen[k] = true
		switch k {
		case "provider":
			d.ProviderId = v
		case "upstream":
			d.UpstreamModel = v
		case "weight", "priority":
			least := int64(0)
			if k == "weight" {
				least = 1 // a zero weight would never be chosen
			}
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n < least {
				return nil, fmt.Errorf("invalid --deployment %q: %s must be a whole number, at least %d", spec, k, least)
			}
			if k == "weight" {
				d.Weight = int32(n)
			} else {
				d.Priority = int32(n)
			}
		case "no-training":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("invalid --deployment %q: no-training must be true or false", spec)
			}
			d.NoTraining = b
		case "retention":
			switch days, isDays := strings.CutSuffix(v, "d"); {
			case v == "zero":
				d.Retention = adminv1.DataRetention_DATA_RETENTION_ZERO
			case v == "unknown":
				d.Retention = adminv1.DataRetention_DATA_RETENTION_UNKNOWN
			case isDays:
				n, err := strconv.ParseInt(days, 10, 32)
				if err != nil || n < 1 {
					return nil, fmt.Errorf("invalid --deployment %q: retention=%s: want a whole number of days such as 30d", spec, v)
				}
				d.Retention, d.RetentionDays = adminv1.DataRetention_DATA_RETENTION_LIMITED, int32(n)
			default:
				return nil, fmt.Errorf("invalid --deployment %q: retention must be zero, unknown or a number of days such as 30d", spec)
			}
		default:
			return nil, fmt.Errorf("invalid --deployment %q: unknown key %q (want provider, upstream, weight, priority, no-training, retention)", spec, k)
		}
	}
	if d.ProviderId == "" || d.UpstreamModel == "" {
		return nil, fmt.Errorf("invalid --deployment %q: provider and upstream are required", spec)
	}
	return d, nil
}

// formatDeployment writes a deployment in --deployment's syntax, so a table
// cell can be pasted back into a command.
// Guarantees appear only when declared: their absence is the default.
func formatDeployment(d *adminv1.Deployment) string {
	s := fmt.Sprintf("provider=%s,upstream=%s,weight=%d,priority=%d", d.GetProviderId(), d.GetUpstreamModel(), d.GetWeight(), d.GetPriority())
	if d.GetNoTraining() {
		s += ",no-training=true"
	}
	switch d.GetRetention() {
	case adminv1.DataRetention_DATA_RETENTION_ZERO:
		s += ",retention=zero"
	case adminv1.DataRetention_DATA_RETENTION_LIMITED:
		s += fmt.Sprintf(",retention=%dd", d.GetRetentionDays())
	}
	return s
}

// modelFlags are the flags create and update share.
type modelFlags struct {
	deployments                     []string
	inputPrice, outputPrice, cached string
	priceEffective                  string
	contextWindow                   int64
}

var priceFlags = []string{"input-price", "output-price", "cached-input-price"}

func (mf *modelFlags) register(f *pflag.FlagSet, update bool) {
	verb := "serves the model"
	if update {
		verb = "replaces every deployment"
	}
	f.StringArrayVar(&mf.deployments, "deployment", nil, deploymentSyntax+"; repeat for each deployment; "+verb+
		"; no-training and retention declare what the provider guarantees (default: nothing)")
	f.StringVar(&mf.inputPrice, "input-price", "", "price per million input tokens: micro-dollars (2500000) or dollars ('$2.50')")
	f.StringVar(&mf.outputPrice, "output-price", "", "price per million output tokens: micro-dollars or dollars")
	f.StringVar(&mf.cached, "cached-input-price", "", "price per million cached input tokens: micro-dollars or dollars")
	f.StringVar(&mf.priceEffective, "price-effective", "", "when the prices take effect: RFC 3339 time or a duration from now (default now)")
	f.Int64Var(&mf.contextWindow, "context-window", 0, "largest prompt plus output, in tokens")
}

func (mf *modelFlags) parseDeployments() ([]*adminv1.Deployment, error) {
	var out []*adminv1.Deployment
	for _, spec := range mf.deployments {
		d, err := parseDeployment(spec)
		if err != nil {
			return nil, usagef("%v", err)
		}
		out = append(out, d)
	}
	return out, nil
}

func pricesGiven(f *pflag.FlagSet) bool {
	for _, n := range priceFlags {
		if f.Changed(n) {
			return true
		}
	}
	return false
}

// applyPricing sets the prices given on the command line onto p, leaving the
// others as they are.
func (mf *modelFlags) applyPricing(f *pflag.FlagSet, p *adminv1.Pricing, c *cli) error {
	for _, x := range []struct {
		flag, value string
		dst         *int64
	}{
		{"input-price", mf.inputPrice, &p.InputMicrosPerMtok},
		{"output-price", mf.outputPrice, &p.OutputMicrosPerMtok},
		{"cached-input-price", mf.cached, &p.CachedInputMicrosPerMtok},
	} {
		if !f.Changed(x.flag) {
			continue
		}
		v, err := parseMicros(x.value)
		if err != nil {
			return usagef("--%s: %v", x.flag, err)
		}
		*x.dst = v
	}
	if f.Changed("price-effective") {
		if !pricesGiven(f) {
			return usagef("--price-effective needs at least one of --input-price, --output-price, --cached-input-price")
		}
		t, err := parseTime(mf.priceEffective, c.now(), true)
		if err != nil {
			return usagef("--price-effective: %v", err)
		}
		p.EffectiveTime = timestamppb.New(t)
	}
	return nil
}

func (c *cli) modelList() *cobra.Command {
	var tenant string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List models",
		Example: `  tollgatectl models list
  tollgatectl models list --tenant acme`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.models()
			if err != nil {
				return err
			}
			req := &adminv1.ListModelsRequest{Tenant: tenant}
			all, err := collect(cmd.Context(), limit, func(ctx context.Context, size int32, token string) ([]*adminv1.Model, string, error) {
				req.PageSize, req.PageToken = size, token
				resp, err := client.ListModels(ctx, req)
				return resp.GetModels(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			return c.print(&adminv1.ListModelsResponse{Models: all}, func(t *table) { modelTable(t, all...) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant", "", "only models this tenant (slug or id) can use: its own and the platform's")
	limitFlag(f, &limit)
	return cmd
}

func (c *cli) modelGet() *cobra.Command {
	return &cobra.Command{
		Use:     "get ID",
		Short:   "Show one model",
		Example: `  tollgatectl model get 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.models()
			if err != nil {
				return err
			}
			resp, err := client.GetModel(cmd.Context(), &adminv1.GetModelRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { modelTable(t, resp.GetModel()) })
		}),
	}
}

func (c *cli) modelCreate() *cobra.Command {
	var tenant string
	var mf modelFlags
	cmd := &cobra.Command{
		Use:   "create NAME --deployment provider=ID,upstream=NAME",
		Short: "Publish a model name and where it is served",
		Long: `Publish a model name that clients can ask for. Each --deployment names a
provider and the model name that provider knows; lower priority numbers are
tried first and deployments of equal priority share traffic by weight.

A deployment may declare what its provider guarantees under your contract with
it: no-training=true (it does not train on these requests) and retention=zero
(it keeps nothing), retention=30d (it keeps requests 30 days) or
retention=unknown (the default). Tenants whose policy requires no training or
zero retention are routed only to deployments that declare it (docs/privacy.md).

Prices are per million tokens, in integer micro-dollars (2500000) or in dollars
with up to six decimals ('$2.50', 2.50, 0.000001). Quote a dollar sign, or the
shell will expand $2. Without --tenant the model belongs to the platform.`,
		Example: `  tollgatectl model create gpt-4o-mini \
    --deployment provider=3c9e1f4a-6b7d-4e2f-9a1b-8c7d6e5f4a3b,upstream=gpt-4o-mini \
    --input-price '$0.15' --output-price '$0.60' --cached-input-price '$0.075' --context-window 128000

  # Fail over from Anthropic to Bedrock
  tollgatectl model create claude-sonnet \
    --deployment provider=ID1,upstream=claude-sonnet-4-5 \
    --deployment provider=ID2,upstream=anthropic.claude-sonnet-4-5,priority=1

  # A deployment under a zero-data-retention agreement
  tollgatectl model create gpt-4o-zdr \
    --deployment provider=ID,upstream=gpt-4o,no-training=true,retention=zero \
    --input-price '$2.50' --output-price '$10'`,
		Args: exactArgs("NAME"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			model := &adminv1.Model{Name: args[0], ContextWindow: mf.contextWindow}
			if err := nonNegative(f, "context-window", mf.contextWindow); err != nil {
				return err
			}
			var err error
			if model.Deployments, err = mf.parseDeployments(); err != nil {
				return err
			}
			if len(model.Deployments) == 0 {
				return usagef("at least one --deployment is required")
			}
			if pricesGiven(f) || f.Changed("price-effective") {
				model.Pricing = &adminv1.Pricing{}
				if err := mf.applyPricing(f, model.Pricing, c); err != nil {
					return err
				}
			}
			if model.TenantId, err = c.tenantID(cmd.Context(), tenant); err != nil {
				return err
			}
			client, err := c.models()
			if err != nil {
				return err
			}
			resp, err := client.CreateModel(cmd.Context(), &adminv1.CreateModelRequest{Model: model})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { modelTable(t, resp.GetModel()) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant", "", "the owning tenant's slug or id (default: a platform model)")
	mf.register(f, false)
	return cmd
}

func (c *cli) modelUpdate() *cobra.Command {
	var name string
	var mf modelFlags
	cmd := &cobra.Command{
		Use:   "update ID",
		Short: "Change a model, its deployments or its price",
		Long: `Change a model. Only the flags given are changed. --deployment replaces the
whole list, so give every deployment the model should keep.

A price flag adds a new price from --price-effective (default now); earlier
prices are kept for the usage they applied to. Prices not given are carried
over from the current price, which is read first.`,
		Example: `  tollgatectl model update 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d --output-price '$0.50'
  tollgatectl model update 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d --input-price 2000000 --price-effective 2026-02-01T00:00:00Z
  tollgatectl model update 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d --deployment provider=ID2,upstream=gpt-4o-mini`,
		Args: exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			mask, err := updateMask(f, []flagPath{
				{"name", "name"},
				{"context-window", "context_window"},
				{"deployment", "deployments"},
				{"input-price", "pricing"},
				{"output-price", "pricing"},
				{"cached-input-price", "pricing"},
				{"price-effective", "pricing"},
			})
			if err != nil {
				return err
			}
			if err := nonNegative(f, "context-window", mf.contextWindow); err != nil {
				return err
			}
			model := &adminv1.Model{Id: args[0], Name: name, ContextWindow: mf.contextWindow}
			if model.Deployments, err = mf.parseDeployments(); err != nil {
				return err
			}
			if f.Changed("deployment") && len(model.Deployments) == 0 {
				return usagef("--deployment needs a value: a model must keep at least one deployment")
			}
			pricing := &adminv1.Pricing{}
			// Check the price flags before any call, so a typo is a usage
			// error even when the server is down.
			if err := mf.applyPricing(f, pricing, c); err != nil {
				return err
			}
			client, err := c.models()
			if err != nil {
				return err
			}
			if pricesGiven(f) {
				// The API replaces the whole price, so a price the operator
				// did not mention would otherwise become zero.
				current, err := client.GetModel(cmd.Context(), &adminv1.GetModelRequest{Id: args[0]})
				if err != nil {
					return fmt.Errorf("read the current price: %w", err)
				}
				merged := &adminv1.Pricing{}
				if cur := current.GetModel().GetPricing(); cur != nil {
					merged = proto.Clone(cur).(*adminv1.Pricing)
					// The new price starts at --price-effective or now, not
					// when the current one did.
					merged.EffectiveTime = nil
				}
				if err := mf.applyPricing(f, merged, c); err != nil {
					return err
				}
				model.Pricing = merged
			}
			resp, err := client.UpdateModel(cmd.Context(), &adminv1.UpdateModelRequest{Model: model, UpdateMask: mask})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { modelTable(t, resp.GetModel()) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "the name clients send")
	mf.register(f, true)
	return cmd
}

func (c *cli) modelDelete() *cobra.Command {
	return &cobra.Command{
		Use:     "delete ID",
		Short:   "Delete a model",
		Example: `  tollgatectl model delete 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.models()
			if err != nil {
				return err
			}
			resp, err := client.DeleteModel(cmd.Context(), &adminv1.DeleteModelRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.printDeleted(resp, "model", args[0])
		}),
	}
}
