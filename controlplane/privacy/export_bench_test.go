package privacy_test

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/controlplane/privacy"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
)

// BenchmarkExportUsage exports a tenant with 20,000 usage records; the
// heap it holds stays about a page, whatever the tenant's size
// (reported as peak-heap-MB, sampled after each page).
func BenchmarkExportUsage(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(b.TempDir(), "tollgate.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	tn, err := st.Client().Tenant.Create().SetName("big").SetSlug("big").Save(ctx)
	if err != nil {
		b.Fatal(err)
	}
	const n = 20_000
	for start := 0; start < n; start += 500 {
		err := st.InTx(ctx, func(tx *ent.Tx) error {
			var bulk []*ent.UsageRecordCreate
			for i := start; i < start+500; i++ {
				bulk = append(bulk, tx.UsageRecord.Create().SetRequestID(uuid.NewString()).SetTenantID(tn.ID).
					SetModel("gpt-4o").SetProvider("openai").SetInputTokens(100).SetOutputTokens(20).SetCostMicros(7).
					SetStatusCode(200).SetCreatedAt(time.Now().Add(-time.Duration(i)*time.Second)))
			}
			return tx.UsageRecord.CreateBulk(bulk...).Exec(ctx)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	exp := privacy.NewExporter(st, nil)
	var peak uint64
	b.ResetTimer()
	for b.Loop() {
		lines := 0
		err := exp.Export(ctx, privacy.Subject{TenantID: tn.ID}, func(privacy.Line) error {
			lines++
			if lines%privacy.ExportPageSize == 0 {
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapInuse)
			}
			return nil
		})
		if err != nil || lines < n {
			b.Fatalf("%d lines, %v", lines, err)
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(n), "records/op")
}
