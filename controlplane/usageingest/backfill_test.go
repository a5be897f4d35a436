package usageingest

import (
	"context"
	"sync"
	"testing"

	"github.com/google/uuid"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/rollup"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
)

// storeUncounted writes records as a version without rollups did: rows
// only, rolled_up false.
func storeUncounted(t *testing.T, st *store.Store, recs []*usagev1.UsageRecord) {
	t.Helper()
	builders := make([]*ent.UsageRecordCreate, len(recs))
	for i, r := range recs {
		b := st.Client().UsageRecord.Create().
			SetRequestID(r.GetRequestId()).SetTenantID(uuid.MustParse(r.GetTenantId())).
			SetModel(r.GetModel()).SetProvider(r.GetProvider()).SetUpstreamModel(r.GetUpstreamModel()).
			SetInputTokens(r.GetInputTokens()).SetOutputTokens(r.GetOutputTokens()).
			SetCachedInputTokens(r.GetCachedInputTokens()).SetReasoningTokens(r.GetReasoningTokens()).
			SetCostMicros(r.GetCostMicros()).SetStatusCode(r.GetStatusCode()).SetLatencyMs(r.GetLatencyMs()).
			SetCreatedAt(r.GetTime().AsTime())
		if r.GetKeyId() != "" {
			b.SetAPIKeyID(uuid.MustParse(r.GetKeyId()))
		}
		builders[i] = b
	}
	// In chunks: SQLite binds at most 32,766 parameters per statement.
	for start := 0; start < len(builders); start += insertChunk {
		if err := st.Client().UsageRecord.CreateBulk(builders[start:min(start+insertChunk, len(builders))]...).Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// After an upgrade, the records stored before the rollups existed are
// counted by the backfill, exactly once, even with two backfills at once
// and ingest going on; records ingest stores are never counted again.
func TestBackfillCountsRecordsStoredBeforeRollups(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		s := New(st, quiet())
		key := uuid.New()
		var old, fresh []*usagev1.UsageRecord
		for i := range 1300 { // more than two backfill batches
			old = append(old, variedRecord(i, key))
		}
		for i := range 200 {
			fresh = append(fresh, variedRecord(i, key))
		}
		storeUncounted(t, st, old)
		if _, err := s.Store(ctx, &usagev1.IngestRequest{BatchId: 1, Records: fresh[:100]}); err != nil {
			t.Fatal(err)
		}
		if n := rollupRequests(t, st); n != 100 {
			t.Fatalf("before the backfill the rollups count %d requests, want the 100 ingested", n)
		}

		var wg sync.WaitGroup
		counted := make([]int, 2)
		errs := make([]error, 2)
		for i := range 2 {
			wg.Go(func() { counted[i], errs[i] = New(st, quiet()).BackfillRollups(ctx) })
		}
		if _, err := s.Store(ctx, &usagev1.IngestRequest{BatchId: 2, Records: fresh[100:]}); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if counted[0]+counted[1] != len(old) {
			t.Fatalf("the backfills counted %d+%d records, want %d", counted[0], counted[1], len(old))
		}
		for _, p := range []rollup.Period{rollup.Hour, rollup.Day} {
			sameTotals(t, string(p), rollupTotals(t, st, p), recordTotals(t, st, p))
		}
		got, want := everyKeyTotals(t, st)
		sameTotals(t, "every key", got, want)

		// Nothing is left; a second run counts nothing.
		if n, err := s.BackfillRollups(ctx); err != nil || n != 0 {
			t.Fatalf("second backfill: %d records, %v", n, err)
		}
		if left := st.Client().UsageRecord.Query().Where(usagerecord.RolledUp(false)).CountX(ctx); left != 0 {
			t.Fatalf("%d records still not counted", left)
		}
		if n := rollupRequests(t, st); n != 1500 {
			t.Fatalf("the rollups count %d requests, want 1500", n)
		}
	})
}

func rollupRequests(t *testing.T, st *store.Store) int64 {
	t.Helper()
	var total rollup.Counts
	for _, c := range rollupTotals(t, st, rollup.Hour) {
		total.Add(c)
	}
	return total.Requests
}
