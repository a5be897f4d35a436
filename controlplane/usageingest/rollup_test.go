package usageingest

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/rollup"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent/schema"
)

// variedRecord spreads records over two keys (and none), three models, two
// providers, four status classes, latencies across the histogram and times
// across hour and day boundaries.
func variedRecord(i int, key uuid.UUID) *usagev1.UsageRecord {
	r := record(i)
	r.Time = timestamppb.New(time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC).Add(time.Duration(i) * 7 * time.Minute))
	r.Model = []string{"gpt-4o", "claude", "gemini"}[i%3]
	r.Provider = []string{"openai", "azure"}[i%2]
	r.StatusCode = []int32{200, 200, 429, 500, 0}[i%5]
	r.LatencyMs = int64(i * i % 90_000)
	if i%4 != 0 {
		r.KeyId = key.String()
	}
	return r
}

// rollupTotals reads the rollups of one period, shards added up.
func rollupTotals(t *testing.T, st *store.Store, p rollup.Period) map[rollup.Key]rollup.Counts {
	t.Helper()
	end := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	rows, err := rollup.Sum(context.Background(), st, rollup.Filter{Period: p, End: end},
		rollup.ByBucket, rollup.ByTenant, rollup.ByKey, rollup.ByModel, rollup.ByProvider, rollup.ByStatus)
	if err != nil {
		t.Fatal(err)
	}
	out := map[rollup.Key]rollup.Counts{}
	for _, r := range rows {
		out[rollup.Key{Period: p, BucketStart: r.Bucket, TenantID: r.TenantID, KeyID: r.KeyID,
			Model: r.Model, Provider: r.Provider, StatusClass: r.StatusClass}] = r.Counts
	}
	return out
}

// recordTotals computes what the rollups of one period must hold from the
// stored raw records.
func recordTotals(t *testing.T, st *store.Store, p rollup.Period) map[rollup.Key]rollup.Counts {
	t.Helper()
	recs, err := st.Client().UsageRecord.Query().All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	in := make([]rollup.Record, len(recs))
	for i, r := range recs {
		in[i] = rollup.Record{Time: r.CreatedAt, TenantID: r.TenantID, KeyID: r.APIKeyID, Model: r.Model, Provider: r.Provider,
			StatusCode: r.StatusCode, InputTokens: r.InputTokens, OutputTokens: r.OutputTokens,
			CachedInputTokens: r.CachedInputTokens, ReasoningTokens: r.ReasoningTokens, CostMicros: r.CostMicros, LatencyMs: r.LatencyMs}
	}
	out := map[rollup.Key]rollup.Counts{}
	for k, c := range rollup.Fold(in) {
		if k.Period == p && k.KeyID != rollup.AllKeys {
			out[k] = *c
		}
	}
	return out
}

// everyKeyTotals reads the daily rollups that a question without keys
// reads (the every-key rows), and computes the same from the per-key
// totals.
func everyKeyTotals(t *testing.T, st *store.Store) (got, want map[rollup.Key]rollup.Counts) {
	t.Helper()
	end := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	rows, err := rollup.Sum(context.Background(), st, rollup.Filter{Period: rollup.Day, End: end},
		rollup.ByBucket, rollup.ByTenant, rollup.ByModel, rollup.ByProvider, rollup.ByStatus)
	if err != nil {
		t.Fatal(err)
	}
	got = map[rollup.Key]rollup.Counts{}
	for _, r := range rows {
		got[rollup.Key{Period: rollup.Day, BucketStart: r.Bucket, TenantID: r.TenantID, KeyID: rollup.AllKeys,
			Model: r.Model, Provider: r.Provider, StatusClass: r.StatusClass}] = r.Counts
	}
	want = map[rollup.Key]rollup.Counts{}
	for k, c := range rollupTotals(t, st, rollup.Day) {
		k.KeyID = rollup.AllKeys
		w := want[k]
		w.Add(c)
		want[k] = w
	}
	return got, want
}

func sameTotals(t *testing.T, what string, got, want map[rollup.Key]rollup.Counts) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d rollup rows, want %d", what, len(got), len(want))
	}
	for k, w := range want {
		g := got[k]
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s %v:\n got %v\nwant %v", what, k, g, w)
		}
	}
}

// The rollups hold exactly the stored records: a batch sent again, a
// request repeated within a batch, and a batch that overlaps an earlier one
// add nothing twice.
func TestRollupsAddUpStoredRecordsOnce(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		s := New(st, quiet())
		key := uuid.New()
		var recs []*usagev1.UsageRecord
		for i := range 900 { // crosses hours and a day boundary; more than one chunk
			recs = append(recs, variedRecord(i, key))
		}
		first := &usagev1.IngestRequest{BatchId: 1, Records: append(slices.Clone(recs[:600]), proto.Clone(recs[5]).(*usagev1.UsageRecord))}
		overlap := &usagev1.IngestRequest{BatchId: 2, Records: recs[400:]}
		for _, b := range []*usagev1.IngestRequest{first, first, overlap, first, overlap} {
			if _, err := s.Store(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		if n := countRecords(t, st); n != 900 {
			t.Fatalf("%d records stored, want 900", n)
		}
		for _, p := range []rollup.Period{rollup.Hour, rollup.Day} {
			want := recordTotals(t, st, p)
			sameTotals(t, string(p), rollupTotals(t, st, p), want)
			var total rollup.Counts
			for _, c := range want {
				total.Add(c)
			}
			if total.Requests != 900 {
				t.Errorf("%s rollups count %d requests, want 900", p, total.Requests)
			}
		}
		got, want := everyKeyTotals(t, st)
		sameTotals(t, "every key", got, want)
	})
}

// Replicas ingesting at once, the same batches reaching several of them
// (ext_procs replaying a spill), all adding to the same hot rows: every
// request is counted once, with one shard and with several.
func TestConcurrentReplicasCountEachRequestOnce(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		for _, shards := range []int{1, DefaultRollupShards} {
			t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
				ctx := context.Background()
				tenant := uuid.New()
				var batches []*usagev1.IngestRequest
				for b := range 12 {
					var recs []*usagev1.UsageRecord
					for i := range 50 {
						r := record(b*50 + i)
						r.TenantId = tenant.String()
						recs = append(recs, r)
					}
					batches = append(batches, &usagev1.IngestRequest{BatchId: uint64(b), Records: recs})
				}
				var wg sync.WaitGroup
				for replica := range 4 {
					s := New(st, quiet())
					s.RollupShards = shards
					wg.Go(func() {
						// Each replica stores every batch, in its own order.
						for j := range batches {
							b := batches[(j+replica*5)%len(batches)]
							if _, err := s.Store(ctx, b); err != nil {
								t.Errorf("replica %d: %v", replica, err)
								return
							}
						}
					})
				}
				wg.Wait()
				var total rollup.Counts
				for k, c := range rollupTotals(t, st, rollup.Hour) {
					if k.TenantID == tenant {
						total.Add(c)
					}
				}
				var cost int64
				for _, b := range batches {
					for _, r := range b.GetRecords() {
						cost += r.GetCostMicros()
					}
				}
				if total.Requests != 600 || total.CostMicros != cost {
					t.Errorf("rollups hold %d requests costing %d, want 600 costing %d", total.Requests, total.CostMicros, cost)
				}
			})
		}
	})
}

func TestLatencyBuckets(t *testing.T) {
	bounds := schema.LatencyBoundsMs
	for i := 1; i < len(bounds); i++ {
		if bounds[i] <= bounds[i-1] || bounds[i] > 2*bounds[i-1] {
			t.Errorf("bound %d (%d ms) must be above %d ms and at most twice it", i, bounds[i], bounds[i-1])
		}
	}
	for ms, want := range map[int64]int{0: 0, 5: 0, 6: 1, 60_000: len(bounds) - 1, 60_001: len(bounds), 1 << 40: len(bounds)} {
		if got := rollup.Bucket(ms); got != want {
			t.Errorf("Bucket(%d) = %d, want %d", ms, got, want)
		}
	}
}

// BenchmarkHotRowIngest measures batches stored per second by 8 concurrent
// writers that all add to the same rollup rows (one tenant, key and model),
// with one shard and with DefaultRollupShards. PostgreSQL only (SERIALIZABLE,
// where the contention is): TOLLGATE_TEST_POSTGRES_DSN=… go test
// ./controlplane/usageingest -run XXX -bench HotRow.
func BenchmarkHotRowIngest(b *testing.B) {
	if os.Getenv(storetest.EnvPostgresDSN) == "" {
		b.Skip("needs " + storetest.EnvPostgresDSN)
	}
	for _, shards := range []int{1, DefaultRollupShards} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			st := storetest.Postgres(b)
			ctx := context.Background()
			tenant, key := uuid.New(), uuid.New()
			var next atomic.Int64
			b.SetParallelism(8 / max(1, runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				s := New(st, quiet())
				s.RollupShards = shards
				for pb.Next() {
					recs := make([]*usagev1.UsageRecord, 50)
					for i := range recs {
						r := record(int(next.Add(1)))
						r.TenantId, r.KeyId = tenant.String(), key.String()
						r.Time = timestamppb.New(arrival) // one hour: the same rows
						recs[i] = r
					}
					if _, err := s.Store(ctx, &usagev1.IngestRequest{Records: recs}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func TestTheEveryKeyIDIsNoKeysID(t *testing.T) {
	r := record(1)
	r.KeyId = rollup.AllKeys.String()
	if _, err := validate(r); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("a record with key id %s: %v", r.KeyId, err)
	}
}
