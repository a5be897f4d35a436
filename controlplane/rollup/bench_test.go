package rollup_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"google.golang.org/protobuf/types/known/timestamppb"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/rollup"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/controlplane/usageingest"
)

// EnvBenchRecords turns BenchmarkUsageAnalytics on and says how many usage
// records to load (10000000 for docs/benchmarks.md). It needs PostgreSQL
// (TOLLGATE_TEST_POSTGRES_DSN); `make bench-usage` runs it.
const EnvBenchRecords = "TOLLGATE_BENCH_USAGE_RECORDS"

// Shape of the synthetic traffic: 31 days ending at benchEnd, 20 tenants
// (the first with half of all requests), 10 keys each, 8 models.
var (
	benchEnd     = time.Date(2026, 3, 31, 0, 0, 0, 0, time.UTC)
	benchDays    = 31
	benchTenants = 20
	benchKeys    = 10
	benchModels  = []struct{ name, provider string }{
		{"gpt-4o", "openai"}, {"gpt-4o-mini", "openai"}, {"o3", "openai"}, {"claude-sonnet-4-5", "anthropic"},
		{"claude-haiku-4-5", "anthropic"}, {"gemini-2.5-flash", "google"}, {"gemini-2.5-pro", "google"}, {"llama-3.3-70b", "groq"},
	}
	// ingestSample records go through the real ingest path (for one more
	// tenant); the rest is generated straight into the tables.
	ingestSample = 100_000
)

type synth struct {
	rng     *rand.Rand
	tenants []uuid.UUID
	keys    [][]uuid.UUID
}

func newSynth() *synth {
	s := &synth{rng: rand.New(rand.NewPCG(1, 1))}
	for range benchTenants + 1 {
		s.tenants = append(s.tenants, uuid.New())
		var ks []uuid.UUID
		for range benchKeys {
			ks = append(ks, uuid.New())
		}
		s.keys = append(s.keys, ks)
	}
	return s
}

// record is one request of tenant t at time at.
func (s *synth) record(t int, at time.Time) *usagev1.UsageRecord {
	m := benchModels[s.rng.IntN(len(benchModels))]
	in, out := 200+s.rng.Int64N(8_000), s.rng.Int64N(1_500)
	status := int32(200)
	switch x := s.rng.IntN(100); {
	case x < 4:
		status = 429
	case x < 6:
		status = 500
	}
	return &usagev1.UsageRecord{
		RequestId: uuid.NewString(), TenantId: s.tenants[t].String(), KeyId: s.keys[t][s.rng.IntN(benchKeys)].String(),
		Model: m.name, Provider: m.provider, UpstreamModel: m.name, InputTokens: in, OutputTokens: out,
		CachedInputTokens: in / 4, CostMicros: (in*2_500_000 + out*10_000_000 + 500_000) / 1_000_000, StatusCode: status,
		Streamed: true, LatencyMs: int64(150 * (1 + s.rng.ExpFloat64()*8)), TtftMs: 120, Time: timestamppb.New(at),
	}
}

// tenantFor spreads requests: tenant 0 has half, the others share the rest.
func (s *synth) tenantFor() int {
	if s.rng.IntN(2) == 0 {
		return 0
	}
	return 1 + s.rng.IntN(benchTenants-1)
}

func BenchmarkUsageAnalytics(b *testing.B) {
	total, _ := strconv.Atoi(os.Getenv(EnvBenchRecords))
	if total <= ingestSample || os.Getenv(storetest.EnvPostgresDSN) == "" {
		b.Skipf("set %s (> %d) and %s", EnvBenchRecords, ingestSample, storetest.EnvPostgresDSN)
	}
	st := storetest.Postgres(b)
	ctx := context.Background()
	s := newSynth()
	start := benchEnd.AddDate(0, 0, -benchDays)

	// 1. A sample through the real ingest path: 4 concurrent streams of
	// 500-record batches, as ext_proc replicas send them.
	t0 := time.Now()
	var wg sync.WaitGroup
	per := ingestSample / 4
	for w := range 4 {
		srv := usageingest.New(st, slog.New(slog.DiscardHandler))
		rng := rand.New(rand.NewPCG(uint64(w), 7))
		wg.Go(func() {
			ws := &synth{rng: rng, tenants: s.tenants, keys: s.keys}
			for i := 0; i < per; i += 500 {
				recs := make([]*usagev1.UsageRecord, 500)
				for j := range recs {
					at := start.Add(time.Duration(rng.Int64N(int64(benchEnd.Sub(start))))).Truncate(time.Microsecond)
					recs[j] = ws.record(benchTenants, at)
				}
				if _, err := srv.Store(ctx, &usagev1.IngestRequest{Records: recs}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	ingestDur := time.Since(t0)
	b.Logf("ingest path: %d records in %s (%.0f records/s, 4 streams, batches of 500, rollups included)",
		ingestSample, ingestDur.Round(time.Millisecond), float64(ingestSample)/ingestDur.Seconds())

	// 2. The bulk, generated a day at a time: records copied into
	// usage_records, and that day's rollup rows folded in Go and copied
	// into usage_rollups (COPY: PostgreSQL's bulk path; the benchmark is
	// about reading, not about this loader).
	t0 = time.Now()
	bulk := total - ingestSample
	var rollupRows int
	for d := range benchDays {
		day := start.AddDate(0, 0, d)
		n := bulk / benchDays
		if d == benchDays-1 {
			n = bulk - n*(benchDays-1)
		}
		recs := make([]*usagev1.UsageRecord, n)
		folded := make([]rollup.Record, n)
		for i := range recs {
			at := day.Add(time.Duration(s.rng.Int64N(int64(24 * time.Hour)))).Truncate(time.Microsecond)
			r := s.record(s.tenantFor(), at)
			recs[i] = r
			key := uuid.MustParse(r.GetKeyId())
			folded[i] = rollup.Record{Time: at, TenantID: uuid.MustParse(r.GetTenantId()), KeyID: &key, Model: r.GetModel(),
				Provider: r.GetProvider(), StatusCode: r.GetStatusCode(), InputTokens: r.GetInputTokens(), OutputTokens: r.GetOutputTokens(),
				CachedInputTokens: r.GetCachedInputTokens(), CostMicros: r.GetCostMicros(), LatencyMs: r.GetLatencyMs()}
		}
		if err := copyRecords(ctx, st.DB(), recs); err != nil {
			b.Fatal(err)
		}
		rows := rollup.Fold(folded)
		rollupRows += len(rows)
		if err := copyRollups(ctx, st.DB(), rows); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := st.DB().ExecContext(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	loadDur := time.Since(t0)
	var tableSize, rollupSize string
	_ = st.DB().QueryRowContext(ctx, "SELECT pg_size_pretty(pg_total_relation_size('usage_records')), pg_size_pretty(pg_total_relation_size('usage_rollups'))").Scan(&tableSize, &rollupSize)
	var stored, storedRollups int64
	_ = st.DB().QueryRowContext(ctx, "SELECT (SELECT count(*) FROM usage_records), (SELECT count(*) FROM usage_rollups)").Scan(&stored, &storedRollups)
	b.Logf("bulk: %d records and %d rollup rows copied in %s; tables: usage_records %d rows, %s; usage_rollups %d rows, %s",
		bulk, rollupRows, loadDur.Round(time.Second), stored, tableSize, storedRollups, rollupSize)

	big := s.tenants[0]
	r := rollup.Range{Start: benchEnd.AddDate(0, 0, -30), End: benchEnd}
	for _, q := range []struct {
		name string
		f    rollup.Filter
		r    rollup.Range
	}{
		{"rollups/30d-per-day-per-model/largest-tenant", rollup.Filter{TenantID: &big}, r},
		{"rollups/30d-per-day-per-model/all-tenants", rollup.Filter{}, r},
		// Ends mid-day: daily rows for 29 days, hourly rows at both ends.
		{"rollups/30d-per-day-per-model/largest-tenant-uneven-range", rollup.Filter{TenantID: &big},
			rollup.Range{Start: r.Start.Add(7 * time.Hour), End: r.End.Add(7 * time.Hour)}},
	} {
		b.Run(q.name, func(b *testing.B) {
			var groups int
			for b.Loop() {
				rows, err := rollup.SumRange(ctx, st, q.f, q.r, true, rollup.ByBucket, rollup.ByModel)
				if err != nil {
					b.Fatal(err)
				}
				groups = len(rows)
			}
			b.ReportMetric(float64(groups), "groups")
		})
	}
	// The same question asked of the raw records (PostgreSQL's
	// date_trunc; what every summary cost before the rollups).
	b.Run("raw-records/30d-per-day-per-model/largest-tenant", func(b *testing.B) {
		for b.Loop() {
			if _, err := queryLines(ctx, st.DB(), `SELECT date_trunc('day', created_at)::text, model FROM (
				SELECT date_trunc('day', created_at) AS created_at, model, count(*), sum(input_tokens), sum(output_tokens), sum(cost_micros)
				FROM usage_records WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 GROUP BY 1, 2) AS g`, big, r.Start, r.End); err != nil {
				b.Fatal(err)
			}
		}
	})
	explain(b, st, big, r)
	var all string
	if err := st.DB().QueryRowContext(ctx, `EXPLAIN SELECT count(*) FROM usage_rollups WHERE period = 'day' AND bucket_start >= $1
		AND bucket_start < $2 AND api_key_id = $3`, r.Start, r.End, rollup.AllKeys).Scan(&all); err == nil {
		b.Logf("plan of the operator's query starts: %s", all)
	}
}

// explain logs the plan of the per-day per-model query for a tenant (its
// every-key daily rows).
func explain(b *testing.B, st *store.Store, tenant uuid.UUID, r rollup.Range) {
	plan, err := queryLines(context.Background(), st.DB(), `EXPLAIN (ANALYZE, BUFFERS) SELECT bucket_start, model, SUM(requests) FROM usage_rollups
		WHERE period = 'day' AND bucket_start >= $1 AND bucket_start < $2 AND tenant_id = $3 AND api_key_id = $4
		GROUP BY bucket_start, model`, r.Start, r.End, tenant, rollup.AllKeys)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("plan of the daily rows' query:\n%s", strings.Join(plan, "\n"))
}

// queryLines runs a query and returns its first column as text.
func queryLines(ctx context.Context, db *sql.DB, query string, args ...any) (out []string, err error) {
	rs, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := rs.Close(); err == nil {
			err = cerr
		}
	}()
	cols, err := rs.Columns()
	if err != nil {
		return nil, err
	}
	for rs.Next() {
		dest := make([]any, len(cols))
		var first string
		dest[0] = &first
		for i := 1; i < len(dest); i++ {
			dest[i] = new(any)
		}
		if err := rs.Scan(dest...); err != nil {
			return nil, err
		}
		out = append(out, first)
	}
	return out, rs.Err()
}

func withPgx(ctx context.Context, db *sql.DB, fn func(*pgx.Conn) error) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close() //nolint:errcheck // returned to the pool
	return conn.Raw(func(dc any) error { return fn(dc.(*stdlib.Conn).Conn()) })
}

func copyRecords(ctx context.Context, db *sql.DB, recs []*usagev1.UsageRecord) error {
	cols := []string{"id", "request_id", "tenant_id", "api_key_id", "model", "provider", "upstream_model", "input_tokens", "output_tokens",
		"cached_input_tokens", "reasoning_tokens", "estimated", "cost_micros", "status_code", "error_type", "streamed", "latency_ms", "ttft_ms", "created_at", "rolled_up"}
	return withPgx(ctx, db, func(c *pgx.Conn) error {
		_, err := c.CopyFrom(ctx, pgx.Identifier{"usage_records"}, cols, pgx.CopyFromSlice(len(recs), func(i int) ([]any, error) {
			r := recs[i]
			return []any{
				[16]byte(uuid.New()), r.GetRequestId(), [16]byte(uuid.MustParse(r.GetTenantId())), [16]byte(uuid.MustParse(r.GetKeyId())),
				r.GetModel(), r.GetProvider(), r.GetUpstreamModel(), r.GetInputTokens(), r.GetOutputTokens(), r.GetCachedInputTokens(),
				r.GetReasoningTokens(), r.GetEstimated(), r.GetCostMicros(), r.GetStatusCode(), r.GetErrorType(), r.GetStreamed(),
				r.GetLatencyMs(), r.GetTtftMs(), r.GetTime().AsTime(), true, // its rollups are copied below
			}, nil
		}))
		if err != nil {
			return fmt.Errorf("copying usage records: %w", err)
		}
		return nil
	})
}

func copyRollups(ctx context.Context, db *sql.DB, rows map[rollup.Key]*rollup.Counts) error {
	cols := []string{"id", "period", "bucket_start", "tenant_id", "api_key_id", "model", "provider", "status_class", "shard"}
	cols = append(cols, rollup.CountColumns()...)
	type kv struct {
		k rollup.Key
		c *rollup.Counts
	}
	all := make([]kv, 0, len(rows))
	for k, c := range rows {
		all = append(all, kv{k, c})
	}
	return withPgx(ctx, db, func(c *pgx.Conn) error {
		_, err := c.CopyFrom(ctx, pgx.Identifier{"usage_rollups"}, cols, pgx.CopyFromSlice(len(all), func(i int) ([]any, error) {
			k, n := all[i].k, all[i].c
			v := []any{[16]byte(uuid.New()), string(k.Period), k.BucketStart, [16]byte(k.TenantID), [16]byte(k.KeyID), k.Model, k.Provider,
				k.StatusClass, int32(0), n.Requests, n.Errors, n.InputTokens, n.OutputTokens, n.CachedInputTokens, n.ReasoningTokens,
				n.CostMicros, n.LatencyMsSum}
			for _, h := range n.Latency {
				v = append(v, h)
			}
			return v, nil
		}))
		if err != nil {
			return fmt.Errorf("copying usage rollups: %w", err)
		}
		return nil
	})
}
