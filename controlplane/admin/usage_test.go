package admin

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/controlplane/usageingest"
)

func (h *harness) usage() adminv1.UsageServiceClient { return adminv1.NewUsageServiceClient(h.conn) }

// use is a usage record to put in the store.
type use struct {
	tenant, key     string // ids; key may be empty
	model, provider string
	at              time.Time
	in, out, cost   int64
	status          int32
}

// addUsage stores uses through the real ingest path, which maintains the
// rollups that summaries read. Each use's latency is ten times its input
// tokens, in milliseconds.
func (h *harness) addUsage(uses ...use) {
	h.t.Helper()
	req := &usagev1.IngestRequest{}
	for _, u := range uses {
		req.Records = append(req.Records, &usagev1.UsageRecord{
			RequestId: uuid.NewString(), TenantId: u.tenant, KeyId: u.key,
			Model: u.model, Provider: u.provider, UpstreamModel: u.model + "-upstream",
			InputTokens: u.in, OutputTokens: u.out, CachedInputTokens: u.in / 2, ReasoningTokens: u.out / 2,
			CostMicros: u.cost, StatusCode: u.status, LatencyMs: u.in * 10, Time: timestamppb.New(u.at),
		})
	}
	resp, err := usageingest.New(h.store, slog.New(slog.DiscardHandler)).Store(context.Background(), req)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(resp.GetRejected()) > 0 {
		h.t.Fatalf("usage rejected: %v", resp.GetRejected())
	}
}

func addTotals(dst, src *adminv1.UsageTotals) {
	dst.Requests += src.GetRequests()
	dst.Errors += src.GetErrors()
	dst.InputTokens += src.GetInputTokens()
	dst.OutputTokens += src.GetOutputTokens()
	dst.CachedInputTokens += src.GetCachedInputTokens()
	dst.ReasoningTokens += src.GetReasoningTokens()
	dst.CostMicros += src.GetCostMicros()
}

// withoutDerived clears the rates and latencies of every totals in m, for
// tests about what is added up.
func withoutDerived(m proto.Message) proto.Message {
	m = proto.Clone(m)
	zero := func(t *adminv1.UsageTotals) {
		if t != nil {
			t.ErrorRate, t.LatencyP50Ms, t.LatencyP95Ms, t.LatencyMeanMs = 0, 0, 0, 0
		}
	}
	switch m := m.(type) {
	case *adminv1.SummarizeUsageResponse:
		zero(m.GetTotals())
		for _, g := range m.GetGroups() {
			zero(g.GetTotals())
		}
	case *adminv1.GetUsageTimeSeriesResponse:
		for _, se := range m.GetSeries() {
			zero(se.GetTotals())
			for _, p := range se.GetPoints() {
				zero(p.GetTotals())
			}
		}
	}
	return m
}

var day0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// usageFixture is two tenants' traffic over three days.
type usageFixture struct {
	acme, globex          *adminv1.Tenant
	acmeKey1, acmeKey2    string
	globexKey             string
	acmeUses, globexUses  []use
	acmeAdmin, globexAdmn string
}

func newUsageFixture(h *harness) usageFixture {
	f := usageFixture{acme: h.createTenant("acme"), globex: h.createTenant("globex")}
	f.acmeKey1 = h.createKey(h.op(), "acme", "k1").GetKey().GetId()
	f.acmeKey2 = h.createKey(h.op(), "acme", "k2").GetKey().GetId()
	f.globexKey = h.createKey(h.op(), "globex", "g").GetKey().GetId()
	a, g := f.acme.GetId(), f.globex.GetId()
	f.acmeUses = []use{
		{a, f.acmeKey1, "gpt-4o", "openai", day0.Add(1 * time.Hour), 100, 10, 500, 200},
		{a, f.acmeKey1, "gpt-4o", "openai", day0.Add(23*time.Hour + 59*time.Minute), 200, 20, 1000, 429},
		{a, f.acmeKey2, "claude-sonnet", "anthropic", day0.Add(24 * time.Hour), 300, 30, 4000, 200},
		{a, f.acmeKey2, "claude-sonnet", "anthropic", day0.Add(49 * time.Hour), 400, 40, 5000, 500},
		{a, "", "gpt-4o", "azure", day0.Add(50 * time.Hour), 50, 5, 100, 200},
	}
	f.globexUses = []use{
		{g, f.globexKey, "gpt-4o", "openai", day0.Add(2 * time.Hour), 1000, 100, 9000, 200},
		{g, f.globexKey, "secret-model", "openai", day0.Add(26 * time.Hour), 1000, 100, 9000, 200},
	}
	h.addUsage(append(slices.Clone(f.acmeUses), f.globexUses...)...)
	f.acmeAdmin, f.globexAdmn = h.tenantAdmin("acme"), h.tenantAdmin("globex")
	return f
}

func (h *harness) listUsage(ctx context.Context, req *adminv1.ListUsageRecordsRequest) []*adminv1.UsageRecord {
	h.t.Helper()
	var all []*adminv1.UsageRecord
	req = proto.Clone(req).(*adminv1.ListUsageRecordsRequest)
	for {
		resp, err := h.usage().ListUsageRecords(ctx, req)
		if err != nil {
			// Errorf, not Fatal: subtests call this with the parent's t.
			h.t.Errorf("listing usage with %v: %v", req, err)
			return all
		}
		all = append(all, resp.GetRecords()...)
		if resp.GetNextPageToken() == "" {
			return all
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func times(recs []*adminv1.UsageRecord) []time.Time {
	var out []time.Time
	for _, r := range recs {
		out = append(out, r.GetTime().AsTime())
	}
	return out
}

func TestListUsageRecordsNewestFirstByPageAndFilter(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		f := newUsageFixture(h)
		all := h.listUsage(h.op(), &adminv1.ListUsageRecordsRequest{PageSize: 2})
		if len(all) != 7 {
			t.Fatalf("operator listed %d records, want 7", len(all))
		}
		if ts := times(all); !slices.IsSortedFunc(ts, func(a, b time.Time) int { return b.Compare(a) }) {
			t.Errorf("not newest first: %v", ts)
		}
		first := all[0]
		want := f.acmeUses[4]
		if first.GetTenantId() != want.tenant || first.GetKeyId() != "" || first.GetModel() != "gpt-4o" ||
			first.GetProvider() != "azure" || first.GetUpstreamModel() != "gpt-4o-upstream" || first.GetInputTokens() != 50 ||
			first.GetCachedInputTokens() != 25 || first.GetReasoningTokens() != 2 || first.GetCostMicros() != 100 ||
			!first.GetTime().AsTime().Equal(want.at) || first.GetRequestId() == "" || first.GetId() == "" {
			t.Errorf("newest record = %v", first)
		}

		for name, tt := range map[string]struct {
			req  *adminv1.ListUsageRecordsRequest
			want int
		}{
			"tenant by slug":  {&adminv1.ListUsageRecordsRequest{Tenant: "acme"}, 5},
			"tenant by id":    {&adminv1.ListUsageRecordsRequest{Tenant: f.globex.GetId()}, 2},
			"key":             {&adminv1.ListUsageRecordsRequest{KeyId: f.acmeKey2}, 2},
			"model":           {&adminv1.ListUsageRecordsRequest{Model: "gpt-4o"}, 4},
			"model in tenant": {&adminv1.ListUsageRecordsRequest{Tenant: "acme", Model: "gpt-4o"}, 3},
			"time range": {&adminv1.ListUsageRecordsRequest{
				StartTime: timestamppb.New(day0.Add(24 * time.Hour)), EndTime: timestamppb.New(day0.Add(49 * time.Hour)),
			}, 2}, // start inclusive, end exclusive
		} {
			t.Run(name, func(t *testing.T) {
				tt.req.PageSize = 1
				if got := h.listUsage(h.op(), tt.req); len(got) != tt.want {
					t.Errorf("%d records, want %d", len(got), tt.want)
				}
			})
		}
	})
}

// A tenant admin reads its own tenant's usage and nothing else, by any
// filter: another tenant by slug, id or guess is NotFound, as a tenant that
// does not exist; another tenant's key matches nothing.
func TestTenantAdminReadsOnlyItsOwnUsage(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		f := newUsageFixture(h)
		admin := h.ctx(f.acmeAdmin)

		own := h.listUsage(admin, &adminv1.ListUsageRecordsRequest{})
		if len(own) != 5 {
			t.Fatalf("acme's admin listed %d records, want acme's 5", len(own))
		}
		for _, r := range own {
			if r.GetTenantId() != f.acme.GetId() {
				t.Errorf("acme's admin sees a record of tenant %s", r.GetTenantId())
			}
		}
		for _, other := range []string{"globex", f.globex.GetId(), uuid.NewString(), "nope"} {
			_, err := h.usage().ListUsageRecords(admin, &adminv1.ListUsageRecordsRequest{Tenant: other})
			wantCode(t, err, codes.NotFound)
			_, err = h.usage().SummarizeUsage(admin, &adminv1.SummarizeUsageRequest{Tenant: other, GroupBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL})
			wantCode(t, err, codes.NotFound)
		}
		if got := h.listUsage(admin, &adminv1.ListUsageRecordsRequest{KeyId: f.globexKey}); len(got) != 0 {
			t.Errorf("acme's admin reads %d records of globex's key", len(got))
		}
		if got := h.listUsage(admin, &adminv1.ListUsageRecordsRequest{Model: "secret-model"}); len(got) != 0 {
			t.Errorf("acme's admin reads %d records of globex's model", len(got))
		}
		for _, by := range []adminv1.UsageGroupBy{
			adminv1.UsageGroupBy_USAGE_GROUP_BY_DAY, adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL,
			adminv1.UsageGroupBy_USAGE_GROUP_BY_KEY, adminv1.UsageGroupBy_USAGE_GROUP_BY_PROVIDER,
		} {
			resp, err := h.usage().SummarizeUsage(admin, &adminv1.SummarizeUsageRequest{
				GroupBy: by, StartTime: timestamppb.New(day0), EndTime: timestamppb.New(day0.Add(72 * time.Hour)),
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetTotals().GetCostMicros(); got != 10600 {
				t.Errorf("by %v: acme's admin sums %d micro-dollars, want acme's 10600", by, got)
			}
			for _, g := range resp.GetGroups() {
				if g.GetKey() == f.globexKey || g.GetKey() == "secret-model" {
					t.Errorf("by %v: acme's admin sees group %q", by, g.GetKey())
				}
			}
			resp, err = h.usage().SummarizeUsage(admin, &adminv1.SummarizeUsageRequest{
				GroupBy: by, KeyId: f.globexKey, StartTime: timestamppb.New(day0), EndTime: timestamppb.New(day0.Add(72 * time.Hour)),
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetGroups()) != 0 || resp.GetTotals().GetRequests() != 0 {
				t.Errorf("by %v with globex's key: %v", by, resp)
			}
		}
		// And the other way round.
		if got := h.listUsage(h.ctx(f.globexAdmn), &adminv1.ListUsageRecordsRequest{}); len(got) != 2 {
			t.Errorf("globex's admin listed %d records, want 2", len(got))
		}
	})
}

func totals(requests, errs, in, out, cost int64) *adminv1.UsageTotals {
	return &adminv1.UsageTotals{Requests: requests, Errors: errs, InputTokens: in, OutputTokens: out,
		CachedInputTokens: in / 2, ReasoningTokens: out / 2, CostMicros: cost}
}

func TestSummarizeUsage(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		f := newUsageFixture(h)
		// Halves computed per record: 100/2+200/2 = 150, 10/2+20/2 = 15.
		sum := func(u ...use) *adminv1.UsageTotals {
			out := &adminv1.UsageTotals{}
			for _, x := range u {
				addTotals(out, &adminv1.UsageTotals{Requests: 1, InputTokens: x.in, OutputTokens: x.out,
					CachedInputTokens: x.in / 2, ReasoningTokens: x.out / 2, CostMicros: x.cost})
				if x.status >= 400 {
					out.Errors++
				}
			}
			return out
		}
		a := f.acmeUses
		window := func(by adminv1.UsageGroupBy) *adminv1.SummarizeUsageRequest {
			return &adminv1.SummarizeUsageRequest{Tenant: "acme", GroupBy: by,
				StartTime: timestamppb.New(day0), EndTime: timestamppb.New(day0.Add(72 * time.Hour))}
		}
		tests := []struct {
			name string
			req  *adminv1.SummarizeUsageRequest
			want []*adminv1.UsageGroup
		}{
			{"by day, in UTC", window(adminv1.UsageGroupBy_USAGE_GROUP_BY_DAY), []*adminv1.UsageGroup{
				{Key: "2026-03-01", Totals: sum(a[0], a[1])},
				{Key: "2026-03-02", Totals: sum(a[2])},
				{Key: "2026-03-03", Totals: sum(a[3], a[4])},
			}},
			{"by model, costliest first", window(adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL), []*adminv1.UsageGroup{
				{Key: "claude-sonnet", Totals: sum(a[2], a[3])},
				{Key: "gpt-4o", Totals: sum(a[0], a[1], a[4])},
			}},
			{"by key, no key as empty", window(adminv1.UsageGroupBy_USAGE_GROUP_BY_KEY), []*adminv1.UsageGroup{
				{Key: f.acmeKey2, Totals: sum(a[2], a[3])},
				{Key: f.acmeKey1, Totals: sum(a[0], a[1])},
				{Key: "", Totals: sum(a[4])},
			}},
			{"by provider", window(adminv1.UsageGroupBy_USAGE_GROUP_BY_PROVIDER), []*adminv1.UsageGroup{
				{Key: "anthropic", Totals: sum(a[2], a[3])},
				{Key: "openai", Totals: sum(a[0], a[1])},
				{Key: "azure", Totals: sum(a[4])},
			}},
			// The range is rounded out to whole hours: 22:30 to 01:00+1s
			// reads 22:00 to 02:00 (a[4] at 02:00 stays out).
			{"partial days at both ends", &adminv1.SummarizeUsageRequest{Tenant: "acme", GroupBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_DAY,
				StartTime: timestamppb.New(day0.Add(22*time.Hour + 30*time.Minute)), EndTime: timestamppb.New(day0.Add(49*time.Hour + time.Second))},
				[]*adminv1.UsageGroup{
					{Key: "2026-03-01", Totals: sum(a[1])},
					{Key: "2026-03-02", Totals: sum(a[2])},
					{Key: "2026-03-03", Totals: sum(a[3])},
				}},
			{"key and model filters", &adminv1.SummarizeUsageRequest{KeyId: f.acmeKey1, Model: "gpt-4o", GroupBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_DAY,
				StartTime: timestamppb.New(day0), EndTime: timestamppb.New(day0.Add(72 * time.Hour))},
				[]*adminv1.UsageGroup{{Key: "2026-03-01", Totals: sum(a[0], a[1])}}},
			{"operator across tenants", &adminv1.SummarizeUsageRequest{GroupBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL,
				StartTime: timestamppb.New(day0), EndTime: timestamppb.New(day0.Add(72 * time.Hour))},
				[]*adminv1.UsageGroup{
					{Key: "gpt-4o", Totals: sum(a[0], a[1], a[4], f.globexUses[0])},
					// Equal cost: more requests first.
					{Key: "claude-sonnet", Totals: sum(a[2], a[3])},
					{Key: "secret-model", Totals: sum(f.globexUses[1])},
				}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp, err := h.usage().SummarizeUsage(h.op(), tt.req)
				if err != nil {
					t.Fatal(err)
				}
				want := &adminv1.SummarizeUsageResponse{Groups: tt.want, Totals: &adminv1.UsageTotals{},
					StartTime: timestamppb.New(tt.req.GetStartTime().AsTime().Truncate(time.Hour)),
					EndTime:   timestamppb.New(tt.req.GetEndTime().AsTime().Add(time.Hour - time.Nanosecond).Truncate(time.Hour))}
				for _, g := range tt.want {
					addTotals(want.Totals, g.GetTotals())
				}
				if got := withoutDerived(resp); !proto.Equal(got, want) {
					t.Errorf("got  %v\nwant %v", resp, want)
				}
			})
		}
		if got := sum(a[0], a[1]); !proto.Equal(got, totals(2, 1, 300, 30, 1500)) {
			t.Fatalf("test helper sums wrong: %v", got)
		}
	})
}

// Without a range, the summary covers the 30 days before now.
func TestSummarizeUsageDefaultsToTheLast30Days(t *testing.T) {
	h := newHarness(t, storetest.SQLite(t))
	acme := h.createTenant("acme").GetId()
	now := time.Now().UTC()
	h.addUsage(
		use{tenant: acme, model: "m", at: now.Add(-time.Hour), cost: 1},
		use{tenant: acme, model: "m", at: now.Add(-29 * 24 * time.Hour), cost: 10},
		use{tenant: acme, model: "m", at: now.Add(-31 * 24 * time.Hour), cost: 100},
	)
	resp, err := h.usage().SummarizeUsage(h.op(), &adminv1.SummarizeUsageRequest{GroupBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetTotals().GetCostMicros(); got != 11 {
		t.Errorf("default range sums %d micro-dollars, want 11 (the last 30 days)", got)
	}
	if d := resp.GetEndTime().AsTime().Sub(resp.GetStartTime().AsTime()); d != 30*24*time.Hour {
		t.Errorf("default range is %v", d)
	}
}

func TestUsageBadInput(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		h.createTenant("acme")
		ts := timestamppb.New
		list := []struct {
			name string
			req  *adminv1.ListUsageRecordsRequest
			want []string
		}{
			{"everything wrong", &adminv1.ListUsageRecordsRequest{
				KeyId: "tgk_123", Model: strings.Repeat("m", 201), PageSize: -1, PageToken: "garbage",
				StartTime: ts(day0), EndTime: ts(day0.Add(-time.Second)),
			}, []string{"key_id", "model", "end_time", "page_size", "page_token"}},
			{"bad timestamp", &adminv1.ListUsageRecordsRequest{StartTime: &timestamppb.Timestamp{Seconds: 1 << 62}}, []string{"start_time"}},
		}
		for _, tt := range list {
			t.Run("list "+tt.name, func(t *testing.T) {
				_, err := h.usage().ListUsageRecords(h.op(), tt.req)
				if got := violations(t, err); !slices.Equal(got, tt.want) {
					t.Errorf("violations %v, want %v", got, tt.want)
				}
			})
		}
		summary := []struct {
			name string
			req  *adminv1.SummarizeUsageRequest
			want []string
		}{
			{"no grouping", &adminv1.SummarizeUsageRequest{}, []string{"group_by"}},
			{"unknown grouping", &adminv1.SummarizeUsageRequest{GroupBy: 99}, []string{"group_by"}},
			{"more than a year", &adminv1.SummarizeUsageRequest{GroupBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_DAY,
				StartTime: ts(day0), EndTime: ts(day0.Add(367 * 24 * time.Hour))}, []string{"start_time"}},
			{"end before a defaulted start", &adminv1.SummarizeUsageRequest{GroupBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_DAY,
				StartTime: ts(time.Now().Add(time.Hour))}, []string{"end_time"}},
			{"bad key", &adminv1.SummarizeUsageRequest{KeyId: "x", GroupBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_KEY}, []string{"key_id"}},
		}
		for _, tt := range summary {
			t.Run("summarize "+tt.name, func(t *testing.T) {
				_, err := h.usage().SummarizeUsage(h.op(), tt.req)
				if got := violations(t, err); !slices.Equal(got, tt.want) {
					t.Errorf("violations %v, want %v", got, tt.want)
				}
			})
		}
		// Validation comes before the tenant is looked up: a bad request
		// naming an unknown tenant is still InvalidArgument.
		_, err := h.usage().ListUsageRecords(h.op(), &adminv1.ListUsageRecordsRequest{Tenant: "nope", KeyId: "x"})
		wantCode(t, err, codes.InvalidArgument)
	})
}
