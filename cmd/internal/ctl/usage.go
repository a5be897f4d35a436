package ctl

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

func (c *cli) usageCmd() *cobra.Command {
	return resource("usage", "usages", "Read usage records and their totals", c.usageList(), c.usageSummary())
}

// dollars prints micro-dollars as dollars with all six decimals, in integer
// arithmetic: 1500 is $0.001500.
func dollars(m int64) string {
	sign := ""
	if m < 0 {
		sign, m = "-", -m
	}
	return fmt.Sprintf("%s$%d.%06d", sign, m/microsPerDollar, m%microsPerDollar)
}

// usageFilters are the flags list and summary share.
type usageFilters struct {
	tenant, key, model, since, until string
}

func (u *usageFilters) register(f *pflag.FlagSet) {
	f.StringVar(&u.tenant, "tenant", "", "only this tenant's usage (slug or id); the operator sees every tenant's without it")
	f.StringVar(&u.key, "key", "", "only this API key's usage (key id)")
	f.StringVar(&u.model, "model", "", "only usage of this public model name")
	f.StringVar(&u.since, "since", "", "only usage at or after this time (RFC 3339, or a duration before now: 24h, 7d)")
	f.StringVar(&u.until, "until", "", "only usage before this time (RFC 3339, or a duration before now)")
}

// times parses --since and --until.
func (u *usageFilters) times(cmd *cobra.Command, c *cli) (start, end *timestamppb.Timestamp, err error) {
	now := c.now()
	for _, x := range []struct {
		flag, value string
		dst         **timestamppb.Timestamp
	}{{"since", u.since, &start}, {"until", u.until, &end}} {
		if !cmd.Flags().Changed(x.flag) {
			continue
		}
		t, err := parseTime(x.value, now, false)
		if err != nil {
			return nil, nil, usagef("--%s: %v", x.flag, err)
		}
		*x.dst = timestamppb.New(t)
	}
	if start != nil && end != nil && !end.AsTime().After(start.AsTime()) {
		return nil, nil, usagef("--until must be after --since")
	}
	return start, end, nil
}

func usageTable(t *table, recs ...*adminv1.UsageRecord) {
	t.row("TIME", "REQUEST", "TENANT", "KEY", "MODEL", "PROVIDER", "STATUS", "ERROR", "INPUT", "OUTPUT", "CACHED", "REASONING", "COST", "LATENCY", "FLAGS")
	for _, r := range recs {
		var flags []string
		if r.GetStreamed() {
			flags = append(flags, "streamed")
		}
		if r.GetEstimated() {
			flags = append(flags, "estimated")
		}
		status := ""
		if r.GetStatusCode() != 0 {
			status = itoa(r.GetStatusCode())
		}
		t.row(timestamp(r.GetTime()), r.GetRequestId(), r.GetTenantId(), r.GetKeyId(), r.GetModel(), r.GetProvider(),
			status, r.GetErrorType(), itoa(r.GetInputTokens()), itoa(r.GetOutputTokens()),
			itoa(r.GetCachedInputTokens()), itoa(r.GetReasoningTokens()), dollars(r.GetCostMicros()),
			itoa(r.GetLatencyMs())+"ms", strings.Join(flags, ","))
	}
}

func (c *cli) usageList() *cobra.Command {
	var (
		filters usageFilters
		limit   int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List usage records, newest first",
		Long: `List usage records, newest first: one per request, with its tokens, cost
(in dollars, from integer micro-dollars), status and latency. Shows the newest
100 unless --limit says otherwise (0 means all).`,
		Example: `  tollgatectl usage list --tenant acme --since 24h
  tollgatectl usage list --key 5f1d7c1e-8f0a-4b8e-9a57-2d6c0a3e9b11 --model gpt-4o --limit 0 -o json`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			start, end, err := filters.times(cmd, c)
			if err != nil {
				return err
			}
			conn, err := c.connect()
			if err != nil {
				return err
			}
			client := adminv1.NewUsageServiceClient(conn)
			req := &adminv1.ListUsageRecordsRequest{
				Tenant: filters.tenant, KeyId: filters.key, Model: filters.model, StartTime: start, EndTime: end,
			}
			all, err := collect(cmd.Context(), limit, func(ctx context.Context, size int32, token string) ([]*adminv1.UsageRecord, string, error) {
				req.PageSize, req.PageToken = size, token
				resp, err := client.ListUsageRecords(ctx, req)
				return resp.GetRecords(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			return c.print(&adminv1.ListUsageRecordsResponse{Records: all}, func(t *table) { usageTable(t, all...) })
		}),
	}
	f := cmd.Flags()
	filters.register(f)
	// Usage grows by a record per request: "all" is rarely what anyone
	// wants at a terminal.
	f.IntVar(&limit, "limit", 100, "stop after this many records (0 means all)")
	return cmd
}

var groupBys = map[string]adminv1.UsageGroupBy{
	"day":      adminv1.UsageGroupBy_USAGE_GROUP_BY_DAY,
	"model":    adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL,
	"key":      adminv1.UsageGroupBy_USAGE_GROUP_BY_KEY,
	"provider": adminv1.UsageGroupBy_USAGE_GROUP_BY_PROVIDER,
}

func totalsRow(t *table, name string, u *adminv1.UsageTotals) {
	t.row(name, itoa(u.GetRequests()), itoa(u.GetErrors()), itoa(u.GetInputTokens()), itoa(u.GetOutputTokens()),
		itoa(u.GetCachedInputTokens()), itoa(u.GetReasoningTokens()), dollars(u.GetCostMicros()))
}

func summaryTable(t *table, by string, resp *adminv1.SummarizeUsageResponse) {
	t.row(strings.ToUpper(by), "REQUESTS", "ERRORS", "INPUT", "OUTPUT", "CACHED", "REASONING", "COST")
	for _, g := range resp.GetGroups() {
		totalsRow(t, g.GetKey(), g.GetTotals())
	}
	totalsRow(t, "TOTAL", resp.GetTotals())
}

func (c *cli) usageSummary() *cobra.Command {
	var (
		filters usageFilters
		by      string
	)
	cmd := &cobra.Command{
		Use:   "summary",
		Short: "Add usage up by day, model, key or provider",
		Long: `Add usage up by day (UTC), model, key or provider: requests, errors (HTTP
status 400 or more), tokens and cost, with a TOTAL row. Without --since and
--until it covers the last 30 days; a summary spans at most 366 days.`,
		Example: `  tollgatectl usage summary --tenant acme --by model --since 7d
  tollgatectl usage summary --by day --since 2026-01-01T00:00:00Z --until 2026-02-01T00:00:00Z -o json`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			groupBy, ok := groupBys[by]
			if !ok {
				return usagef("--by %q: use day, model, key or provider", by)
			}
			start, end, err := filters.times(cmd, c)
			if err != nil {
				return err
			}
			conn, err := c.connect()
			if err != nil {
				return err
			}
			resp, err := adminv1.NewUsageServiceClient(conn).SummarizeUsage(cmd.Context(), &adminv1.SummarizeUsageRequest{
				Tenant: filters.tenant, KeyId: filters.key, Model: filters.model, StartTime: start, EndTime: end, GroupBy: groupBy,
			})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { summaryTable(t, by, resp) })
		}),
	}
	f := cmd.Flags()
	filters.register(f)
	f.StringVar(&by, "by", "day", "group by day, model, key or provider")
	return cmd
}
