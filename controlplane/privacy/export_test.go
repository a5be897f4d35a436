package privacy_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/controlplane/policy"
	"github.com/tollgate-dev/tollgate/controlplane/privacy"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

// Export pages through every table by id: with pages of 2, each of 7 usage
// records appears exactly once, with its values as the store holds them.
func TestExportPagesThroughEveryRowOnce(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		tenant := mustTenant(t, st, "paged", policy.Retention{UsageDays: 30})
		other := mustTenant(t, st, "other", policy.Retention{})
		at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
		want := map[string]bool{}
		for i := range 7 {
			id := uuid.NewString()
			want[id] = true
			if err := st.Client().UsageRecord.Create().SetRequestID(id).SetTenantID(tenant).SetInputTokens(int64(i)).
				SetCreatedAt(at).Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Client().UsageRecord.Create().SetRequestID(uuid.NewString()).SetTenantID(other).SetCreatedAt(at).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		exp := privacy.NewExporter(st, nil)
		exp.PageSize = 2
		seen := map[string]int{}
		sections := map[string]int{}
		err := exp.Export(ctx, privacy.Subject{TenantID: tenant}, func(l privacy.Line) error {
			sections[l.Section]++
			if l.Section == "usage_records" {
				seen[l.Record["request_id"].(string)]++
				if l.Record["tenant_id"] != tenant.String() || l.Record["created_at"] != "2026-05-01T12:00:00Z" {
					t.Errorf("record %v: want the tenant's id and the arrival time as stored", l.Record)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) != 7 {
			t.Errorf("%d distinct usage records exported, want 7 (sections %v)", len(seen), sections)
		}
		for id, n := range seen {
			if !want[id] || n != 1 {
				t.Errorf("usage record %s exported %d times (ours: %v)", id, n, want[id])
			}
		}
		if sections["tenants"] != 1 || sections["gateway_policies"] != 1 {
			t.Errorf("sections %v", sections)
		}
	})
}
