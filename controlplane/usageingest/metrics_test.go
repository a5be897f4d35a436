package usageingest

import (
	"context"
	"testing"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/telemetry"
)

// Records are counted as accepted, rejected and stored: a batch sent twice
// is accepted twice and stored once.
func TestIngestMetrics(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		tel, err := telemetry.New(t.Context(), telemetry.Options{Service: "tollgate-test"})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tel.Shutdown(context.Background()) }()
		s := New(st, quiet())
		if err := s.Instrument(tel.Meters()); err != nil {
			t.Fatal(err)
		}
		bad := record(3)
		bad.TenantId = "not-a-uuid"
		batch := &usagev1.IngestRequest{BatchId: 1, Records: []*usagev1.UsageRecord{record(1), record(2), bad}}
		for range 2 {
			if _, err := s.Store(t.Context(), batch); err != nil {
				t.Fatal(err)
			}
		}
		fams, err := tel.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for outcome, want := range map[string]float64{"accepted": 4, "rejected": 2, "stored": 2} {
			if n, _ := fams.Sum("tollgate_usage_ingest_records_total", "tollgate_outcome", outcome); n != want {
				t.Errorf("%s records = %v, want %v", outcome, n, want)
			}
		}
		if n, _ := fams.Sum("tollgate_usage_ingest_batch_duration_seconds", "tollgate_outcome", "stored"); n != 2 {
			t.Errorf("stored batches = %v, want 2", n)
		}
	})
}
