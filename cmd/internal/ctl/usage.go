package ctl

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

func (c *cli) usageCmd() *cobra.Command {
	return resource("usage", "usages", "Read usage records, their totals and time series", c.usageList(), c.usageSummary(), c.usageSeries())
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

// usageFilters are the flags list, summary and series share.
type usageFilters struct {
	tenant, key, model, provider, since, until string
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
		if red := r.GetRedactions(); red != nil {
			n := red.GetEmails() + red.GetPhones() + red.GetCards() + red.GetIbans() + red.GetSecrets()
			flags = append(flags, "redacted:"+itoa(n))
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
	"hour":     adminv1.UsageGroupBy_USAGE_GROUP_BY_HOUR,
	"day":      adminv1.UsageGroupBy_USAGE_GROUP_BY_DAY,
	"model":    adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL,
	"key":      adminv1.UsageGroupBy_USAGE_GROUP_BY_KEY,
	"provider": adminv1.UsageGroupBy_USAGE_GROUP_BY_PROVIDER,
	"tenant":   adminv1.UsageGroupBy_USAGE_GROUP_BY_TENANT,
}

var totalsHeader = []string{"REQUESTS", "ERRORS", "ERROR%", "INPUT", "OUTPUT", "CACHED", "REASONING", "COST", "P50", "P95"}

func totalsCells(u *adminv1.UsageTotals) []string {
	return []string{itoa(u.GetRequests()), itoa(u.GetErrors()), fmt.Sprintf("%.2f%%", 100*u.GetErrorRate()),
		itoa(u.GetInputTokens()), itoa(u.GetOutputTokens()), itoa(u.GetCachedInputTokens()), itoa(u.GetReasoningTokens()),
		dollars(u.GetCostMicros()), itoa(u.GetLatencyP50Ms()) + "ms", itoa(u.GetLatencyP95Ms()) + "ms"}
}

func summaryTable(t *table, by string, resp *adminv1.SummarizeUsageResponse) {
	t.row(append([]string{strings.ToUpper(by)}, totalsHeader...)...)
	for _, g := range resp.GetGroups() {
		t.row(append([]string{g.GetKey()}, totalsCells(g.GetTotals())...)...)
	}
	t.row(append([]string{"TOTAL"}, totalsCells(resp.GetTotals())...)...)
}

var splitBys = map[string]adminv1.UsageGroupBy{
	"":         adminv1.UsageGroupBy_USAGE_GROUP_BY_UNSPECIFIED,
	"model":    adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL,
	"key":      adminv1.UsageGroupBy_USAGE_GROUP_BY_KEY,
	"provider": adminv1.UsageGroupBy_USAGE_GROUP_BY_PROVIDER,
	"tenant":   adminv1.UsageGroupBy_USAGE_GROUP_BY_TENANT,
}

var granularities = map[string]adminv1.UsageGranularity{
	"hour": adminv1.UsageGranularity_USAGE_GRANULARITY_HOUR,
	"day":  adminv1.UsageGranularity_USAGE_GRANULARITY_DAY,
}

func seriesTable(t *table, split, every string, resp *adminv1.GetUsageTimeSeriesResponse) {
	head := []string{strings.ToUpper(every)}
	if split != "" {
		head = append([]string{strings.ToUpper(split)}, head...)
	}
	t.row(append(head, totalsHeader...)...)
	for _, se := range resp.GetSeries() {
		for _, p := range se.GetPoints() {
			at := p.GetStartTime().AsTime().UTC()
			when := at.Format(time.DateOnly)
			if every == "hour" {
				when = at.Format("2006-01-02T15:04Z")
			}
			cells := []string{when}
			if split != "" {
				cells = append([]string{se.GetKey()}, cells...)
			}
			t.row(append(cells, totalsCells(p.GetTotals())...)...)
		}
	}
}

func (c *cli) usageSeries() *cobra.Command {
	var (
		filters      usageFilters
		every, split string
	)
	cmd := &cobra.Command{
		Use:   "series",
		Short: "Usage per hour or day, in one series or one per model, key, provider or tenant",
		Long: `Usage per hour or per day (UTC), read from the rollups the control plane keeps
as records arrive: requests, errors, error rate, tokens, cost and latency
percentiles for every bucket with requests. --split gives one series per
model, key, provider or tenant. Ranges are whole hours (--since is rounded down,
--until up); by day at most 366 days, by hour at most 31. Without --since and
--until: the last 30 days.`,
		Example: `  tollgatectl usage series --tenant acme --every day --split model --since 30d
  tollgatectl usage series --every hour --since 24h --provider openai -o json`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			granularity, ok := granularities[every]
			if !ok {
				return usagef("--every %q: use hour or day", every)
			}
			splitBy, ok := splitBys[split]
			if !ok {
				return usagef("--split %q: use model, key, provider or tenant", split)
			}
			start, end, err := filters.times(cmd, c)
			if err != nil {
				return err
			}
			conn, err := c.connect()
			if err != nil {
				return err
			}
			resp, err := adminv1.NewUsageServiceClient(conn).GetUsageTimeSeries(cmd.Context(), &adminv1.GetUsageTimeSeriesRequest{
				Tenant: filters.tenant, KeyId: filters.key, Model: filters.model, Provider: filters.provider,
				StartTime: start, EndTime: end, Granularity: granularity, SplitBy: splitBy,
			})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { seriesTable(t, split, every, resp) })
		}),
	}
	f := cmd.Flags()
	filters.register(f)
	f.StringVar(&filters.provider, "provider", "", "only usage served by this provider")
	f.StringVar(&every, "every", "day", "bucket length: hour or day")
	f.StringVar(&split, "split", "", "one series per model, key, provider or tenant (default: one series)")
	return cmd
}

func (c *cli) usageSummary() *cobra.Command {
	var (
		filters usageFilters
		by      string
	)
	cmd := &cobra.Command{
		Use:   "summary",
		Short: "Add usage up by hour, day, model, key, provider or tenant",
		Long: `Add usage up by hour or day (UTC), model, key, provider or tenant: requests,
errors (HTTP status 400 or more) and error rate, tokens, cost and latency
percentiles (p50, p95), with a TOTAL row. Read from the rollups the control
plane keeps as records arrive, so ranges are whole hours (--since is rounded
down, --until up). Without --since and --until it covers the last 30 days; a
summary spans at most 366 days (31 by hour).`,
		Example: `  tollgatectl usage summary --tenant acme --by model --since 7d
  tollgatectl usage summary --by day --since 2026-01-01T00:00:00Z --until 2026-02-01T00:00:00Z -o json`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			groupBy, ok := groupBys[by]
			if !ok {
				return usagef("--by %q: use hour, day, model, key, provider or tenant", by)
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
				Tenant: filters.tenant, KeyId: filters.key, Model: filters.model, Provider: filters.provider,
				StartTime: start, EndTime: end, GroupBy: groupBy,
			})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { summaryTable(t, by, resp) })
		}),
	}
	f := cmd.Flags()
	filters.register(f)
	f.StringVar(&filters.provider, "provider", "", "only usage served by this provider")
	f.StringVar(&by, "by", "day", "group by hour, day, model, key, provider or tenant")
	return cmd
}
