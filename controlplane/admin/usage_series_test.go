package admin

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

func TestUsageTimeSeries(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		f := newUsageFixture(h)
		a := f.acmeUses
		point := func(at time.Time, u ...use) *adminv1.UsagePoint {
			tot := &adminv1.UsageTotals{}
			for _, x := range u {
				addTotals(tot, &adminv1.UsageTotals{Requests: 1, InputTokens: x.in, OutputTokens: x.out,
					CachedInputTokens: x.in / 2, ReasoningTokens: x.out / 2, CostMicros: x.cost})
				if x.status >= 400 {
					tot.Errors++
				}
			}
			return &adminv1.UsagePoint{StartTime: timestamppb.New(at), Totals: tot}
		}
		series := func(key string, points ...*adminv1.UsagePoint) *adminv1.UsageSeries {
			se := &adminv1.UsageSeries{Key: key, Points: points, Totals: &adminv1.UsageTotals{}}
			for _, p := range points {
				addTotals(se.Totals, p.GetTotals())
			}
			return se
		}
		day := func(n int) time.Time { return day0.AddDate(0, 0, n) }
		hour := func(n int) time.Time { return day0.Add(time.Duration(n) * time.Hour) }
		start, end := timestamppb.New(day0), timestamppb.New(day0.Add(72*time.Hour))
		tests := []struct {
			name string
			req  *adminv1.GetUsageTimeSeriesRequest
			want []*adminv1.UsageSeries
		}{
			{"per day per model", &adminv1.GetUsageTimeSeriesRequest{Tenant: "acme", StartTime: start, EndTime: end,
				Granularity: adminv1.UsageGranularity_USAGE_GRANULARITY_DAY, SplitBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL},
				[]*adminv1.UsageSeries{
					series("claude-sonnet", point(day(1), a[2]), point(day(2), a[3])),
					series("gpt-4o", point(day(0), a[0], a[1]), point(day(2), a[4])),
				}},
			{"per hour, one series", &adminv1.GetUsageTimeSeriesRequest{Tenant: "acme", StartTime: start, EndTime: end,
				Granularity: adminv1.UsageGranularity_USAGE_GRANULARITY_HOUR},
				[]*adminv1.UsageSeries{series("", point(hour(1), a[0]), point(hour(23), a[1]), point(hour(24), a[2]),
					point(hour(49), a[3]), point(hour(50), a[4]))}},
			{"per day per tenant, partial days", &adminv1.GetUsageTimeSeriesRequest{StartTime: timestamppb.New(hour(2)), EndTime: timestamppb.New(hour(49)),
				Granularity: adminv1.UsageGranularity_USAGE_GRANULARITY_DAY, SplitBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_TENANT},
				[]*adminv1.UsageSeries{
					series(f.globex.GetId(), point(day(0), f.globexUses[0]), point(day(1), f.globexUses[1])),
					series(f.acme.GetId(), point(day(0), a[1]), point(day(1), a[2])),
				}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp, err := h.usage().GetUsageTimeSeries(h.op(), tt.req)
				if err != nil {
					t.Fatal(err)
				}
				want := &adminv1.GetUsageTimeSeriesResponse{Series: tt.want, StartTime: tt.req.GetStartTime(), EndTime: tt.req.GetEndTime(),
					Granularity: tt.req.GetGranularity()}
				if got := withoutDerived(resp); !proto.Equal(got, want) {
					t.Errorf("got  %v\nwant %v", got, want)
				}
			})
		}

		// A tenant admin reads its own series only.
		admin := h.ctx(f.acmeAdmin)
		resp, err := h.usage().GetUsageTimeSeries(admin, &adminv1.GetUsageTimeSeriesRequest{StartTime: start, EndTime: end,
			Granularity: adminv1.UsageGranularity_USAGE_GRANULARITY_DAY, SplitBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_TENANT})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetSeries()) != 1 || resp.GetSeries()[0].GetKey() != f.acme.GetId() || resp.GetSeries()[0].GetTotals().GetCostMicros() != 10600 {
			t.Errorf("acme's admin reads %v", resp.GetSeries())
		}
		for _, other := range []string{"globex", f.globex.GetId(), uuid.NewString()} {
			_, err := h.usage().GetUsageTimeSeries(admin, &adminv1.GetUsageTimeSeriesRequest{Tenant: other,
				Granularity: adminv1.UsageGranularity_USAGE_GRANULARITY_DAY})
			wantCode(t, err, codes.NotFound)
		}
	})
}

// Percentiles, mean latency and error rate, with numbers worked out by
// hand: 90 requests at 100 ms and 10 at 8000 ms, 5 of them failed.
func TestUsageLatencyPercentilesAndErrorRate(t *testing.T) {
	h := newHarness(t, storetest.SQLite(t))
	acme := h.createTenant("acme").GetId()
	var uses []use
	for i := range 100 {
		u := use{tenant: acme, model: "m", provider: "p", at: day0.Add(time.Duration(i) * time.Minute), in: 10, status: 200}
		if i >= 90 {
			u.in = 800 // 8000 ms
		}
		if i%20 == 0 {
			u.status = 500
		}
		uses = append(uses, u)
	}
	h.addUsage(uses...)
	resp, err := h.usage().SummarizeUsage(h.op(), &adminv1.SummarizeUsageRequest{GroupBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL,
		StartTime: timestamppb.New(day0), EndTime: timestamppb.New(day0.AddDate(0, 0, 1))})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetTotals()
	// p50: rank 50 of the 90 in (75, 100] ms → 75 + 50/90·25 ≈ 89.
	// p95: rank 95, the 5th of the 10 in (7500, 10000] → 8750.
	if got.GetLatencyP50Ms() != 89 || got.GetLatencyP95Ms() != 8750 || got.GetLatencyMeanMs() != 890 || got.GetErrorRate() != 0.05 {
		t.Errorf("p50 %d, p95 %d, mean %d ms, error rate %v; want 89, 8750, 890, 0.05",
			got.GetLatencyP50Ms(), got.GetLatencyP95Ms(), got.GetLatencyMeanMs(), got.GetErrorRate())
	}
}

// Summaries over ranges that start and end anywhere (daily rows in the
// middle, hourly rows at the ends) equal the records' own sums.
func TestSummariesEqualRecordSumsForAnyRange(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		acme := h.createTenant("acme").GetId()
		rng := rand.New(rand.NewPCG(1, 2))
		var uses []use
		for range 600 {
			uses = append(uses, use{tenant: acme, model: fmt.Sprint("m", rng.IntN(3)), provider: "p",
				at: day0.Add(time.Duration(rng.Int64N(int64(20 * 24 * time.Hour)))).Truncate(time.Second),
				in: rng.Int64N(1000), out: rng.Int64N(100), cost: rng.Int64N(10_000), status: 200})
		}
		h.addUsage(uses...)
		for range 8 {
			from := day0.Add(time.Duration(rng.IntN(20*24)) * time.Hour)
			to := from.Add(time.Duration(1+rng.IntN(15*24)) * time.Hour)
			resp, err := h.usage().SummarizeUsage(h.op(), &adminv1.SummarizeUsageRequest{GroupBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_DAY,
				StartTime: timestamppb.New(from), EndTime: timestamppb.New(to)})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int64{}
			for _, u := range uses {
				if !u.at.Before(from) && u.at.Before(to) {
					want[u.at.Format(time.DateOnly)] += u.cost
				}
			}
			got := map[string]int64{}
			for _, g := range resp.GetGroups() {
				got[g.GetKey()] = g.GetTotals().GetCostMicros()
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s to %s:\n got %v\nwant %v", from, to, got, want)
			}
			keys := make([]string, 0, len(got))
			for _, g := range resp.GetGroups() {
				keys = append(keys, g.GetKey())
			}
			if !slices.IsSorted(keys) {
				t.Errorf("days out of order: %v", keys)
			}
		}
	})
}

func TestUsageTimeSeriesBadInput(t *testing.T) {
	h := newHarness(t, storetest.SQLite(t))
	ts := timestamppb.New
	for name, tt := range map[string]struct {
		req  *adminv1.GetUsageTimeSeriesRequest
		want []string
	}{
		"no granularity":      {&adminv1.GetUsageTimeSeriesRequest{}, []string{"granularity"}},
		"split by day":        {&adminv1.GetUsageTimeSeriesRequest{Granularity: adminv1.UsageGranularity_USAGE_GRANULARITY_DAY, SplitBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_DAY}, []string{"split_by"}},
		"hourly over 31 days": {&adminv1.GetUsageTimeSeriesRequest{Granularity: adminv1.UsageGranularity_USAGE_GRANULARITY_HOUR, StartTime: ts(day0), EndTime: ts(day0.AddDate(0, 0, 32))}, []string{"start_time"}},
		"everything":          {&adminv1.GetUsageTimeSeriesRequest{KeyId: "k", Provider: strings.Repeat("p", 256), Granularity: 9, SplitBy: 42}, []string{"key_id", "provider", "granularity", "split_by"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := h.usage().GetUsageTimeSeries(h.op(), tt.req)
			if got := violations(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("violations %v, want %v", got, tt.want)
			}
		})
	}
}
