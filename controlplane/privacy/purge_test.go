package privacy_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/contentlog"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/policy"
	"github.com/tollgate-dev/tollgate/controlplane/privacy"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/controlplane/usageingest"
	"github.com/tollgate-dev/tollgate/ent"
	entcontentlog "github.com/tollgate-dev/tollgate/ent/contentlog"
	"github.com/tollgate-dev/tollgate/ent/invoice"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
	"github.com/tollgate-dev/tollgate/ent/usagerollup"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func testVault(t *testing.T) *contentlog.Vault {
	t.Helper()
	secret := make([]byte, keyring.SecretSize)
	_, _ = rand.Read(secret)
	ring, err := keyring.New(keyring.Key{ID: "test", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	v, err := contentlog.NewVault(ring)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustTenant(t *testing.T, st *store.Store, slug string, ret policy.Retention) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	tn, err := st.Client().Tenant.Create().SetName(slug).SetSlug(slug).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ret != (policy.Retention{}) {
		if err := st.Client().GatewayPolicy.Create().SetTenantID(tn.ID).SetSpec(policy.Spec{Retention: ret}).Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return tn.ID
}

func mustKey(t *testing.T, st *store.Store, tenant uuid.UUID, ret policy.Retention) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	k, err := st.Client().APIKey.Create().SetTenantID(tenant).SetName("k").SetPrefix("tg-test").SetHash([]byte(uuid.NewString())).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Client().GatewayPolicy.Create().SetAPIKeyID(k.ID).SetSpec(policy.Spec{Retention: ret}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	return k.ID
}

func usageAt(tenant uuid.UUID, key *uuid.UUID, at time.Time, content bool) *usagev1.UsageRecord {
	r := &usagev1.UsageRecord{RequestId: uuid.NewString(), TenantId: tenant.String(), Model: "gpt-4o", Provider: "openai",
		InputTokens: 10, OutputTokens: 5, CostMicros: 7, StatusCode: 200, Time: timestamppb.New(at)}
	if key != nil {
		r.KeyId = key.String()
	}
	if content {
		r.Content = &usagev1.Content{RequestBody: []byte(`{"messages":[]}`), ResponseBody: []byte(`{}`)}
	}
	return r
}

func ingest(t *testing.T, srv *usageingest.Server, recs []*usagev1.UsageRecord) {
	t.Helper()
	for start := 0; start < len(recs); start += 100 {
		if _, err := srv.Store(context.Background(), &usagev1.IngestRequest{Records: recs[start:min(start+100, len(recs))]}); err != nil {
			t.Error(err)
			return
		}
	}
}

// insertContent stores n content rows for tenant that expire at expires,
// sealed by dataKey (or by a data key that no longer exists, when nil).
func insertContent(t *testing.T, st *store.Store, v *contentlog.Vault, tenant uuid.UUID, n int, expires time.Time, orphan bool) {
	t.Helper()
	ctx := context.Background()
	err := st.InTx(ctx, func(tx *ent.Tx) error {
		k, err := v.ForTenant(ctx, tx, tenant)
		if err != nil {
			return err
		}
		keyID := k.ID
		if orphan {
			keyID = uuid.New()
		}
		var b []*ent.ContentLogCreate
		for range n {
			id := uuid.NewString()
			sealed, err := k.Seal(id, &usagev1.Content{RequestBody: []byte("x")})
			if err != nil {
				return err
			}
			b = append(b, tx.ContentLog.Create().SetRequestID(id).SetTenantID(tenant).SetDataKeyID(keyID).
				SetSealed(sealed).SetCreatedAt(expires.Add(-time.Hour)).SetExpiresAt(expires))
		}
		return tx.ContentLog.CreateBulk(b...).Exec(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
}

type rollupTotals struct{ rows, requests, cost int64 }

func rollupsOf(t *testing.T, st *store.Store, tenant uuid.UUID) rollupTotals {
	t.Helper()
	rows, err := st.Client().UsageRollup.Query().Where(usagerollup.TenantID(tenant), usagerollup.PeriodEQ(usagerollup.PeriodDay)).All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out rollupTotals
	for _, r := range rows {
		out.rows++
		out.requests += r.Requests
		out.cost += r.CostMicros
	}
	return out
}

// The purge deletes exactly the rows retention no longer allows — expired
// content, content of a destroyed data key, usage past the tenant's or the
// key's period — in bounded batches, while ingestion goes on, and leaves the
// rollups (what billing reads) as they were.
func TestPurgeDeletesExactlyTheExpiredRowsInBatchesUnderIngest(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		vault := testVault(t)
		now := time.Now().UTC().Truncate(time.Microsecond)
		acme := mustTenant(t, st, "acme", policy.Retention{Content: policy.RetentionFull, ContentDays: 10, UsageDays: 30})
		shortKey := mustKey(t, st, acme, policy.Retention{UsageDays: 7})
		forever := mustTenant(t, st, "forever", policy.Retention{})
		busy := mustTenant(t, st, "busy", policy.Retention{Content: policy.RetentionFull, ContentDays: 10, UsageDays: 30})
		srv := usageingest.New(st, quiet()).KeepContent(contentlog.NewWriter(vault, 30, quiet()))

		var old []*usagev1.UsageRecord
		for i := range 250 { // past acme's 30 days
			old = append(old, usageAt(acme, nil, now.Add(-31*24*time.Hour-time.Duration(i)*time.Minute), false))
		}
		for i := range 120 { // past the key's 7 days, within the tenant's 30
			old = append(old, usageAt(acme, &shortKey, now.Add(-8*24*time.Hour-time.Duration(i)*time.Minute), false))
		}
		var kept []*usagev1.UsageRecord
		for i := range 30 {
			kept = append(kept, usageAt(acme, &shortKey, now.Add(-6*24*time.Hour-time.Duration(i)*time.Minute), false))
		}
		for i := range 100 { // no retention period: kept for ever
			kept = append(kept, usageAt(forever, nil, now.Add(-400*24*time.Hour-time.Duration(i)*time.Minute), false))
		}
		ingest(t, srv, append(old, kept...))
		insertContent(t, st, vault, acme, 230, now.Add(-time.Hour), false)  // expired
		insertContent(t, st, vault, acme, 40, now.Add(24*time.Hour), false) // kept
		insertContent(t, st, vault, acme, 25, now.Add(24*time.Hour), true)  // its data key is gone
		rollupsBefore := rollupsOf(t, st, acme)
		if rollupsBefore.requests < 400 {
			t.Fatalf("rollups count %d requests of acme before the purge, want the 400 ingested at least", rollupsBefore.requests)
		}

		// Ingestion of fresh usage and content goes on during the purge.
		var wg sync.WaitGroup
		var fresh []*usagev1.UsageRecord
		for range 200 {
			fresh = append(fresh, usageAt(busy, nil, now, true))
		}
		wg.Go(func() {
			for start := 0; start < len(fresh); start += 10 {
				ingest(t, srv, fresh[start:start+10])
			}
		})
		p := privacy.NewPurger(st, vault, quiet())
		p.Batch = 100
		p.Now = func() time.Time { return now }
		stats, err := p.Purge(ctx)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if stats.ExpiredContent != 230 || stats.ShreddedContent != 25 || stats.Usage != 370 {
			t.Errorf("purged %+v, want 230 expired and 25 shredded content rows, 370 usage records", stats)
		}
		// 230 → 3 batches, 25 → 1, 250 → 3 (tenant), 120 → 2 (key): every
		// transaction deleted at most 100 rows.
		if stats.Batches < 9 {
			t.Errorf("%d batches, want at least 9 of at most 100 rows", stats.Batches)
		}
		for _, r := range old {
			if n, _ := st.Client().UsageRecord.Query().Where(usagerecord.RequestID(r.GetRequestId())).Count(ctx); n != 0 {
				t.Fatalf("expired usage record %s is still stored", r.GetRequestId())
			}
		}
		for _, r := range append(kept, fresh...) {
			if n, _ := st.Client().UsageRecord.Query().Where(usagerecord.RequestID(r.GetRequestId())).Count(ctx); n != 1 {
				t.Fatalf("usage record %s within its retention was purged", r.GetRequestId())
			}
		}
		if n, _ := st.Client().ContentLog.Query().Where(entcontentlog.TenantID(acme)).Count(ctx); n != 40 {
			t.Errorf("acme has %d content rows, want the 40 unexpired", n)
		}
		if n, _ := st.Client().ContentLog.Query().Where(entcontentlog.TenantID(busy)).Count(ctx); n != 200 {
			t.Errorf("the busy tenant has %d content rows, want the 200 ingested during the purge", n)
		}
		if n, _ := st.Client().ContentLog.Query().Where(entcontentlog.ExpiresAtLTE(now)).Count(ctx); n != 0 {
			t.Errorf("%d expired content rows left", n)
		}
		if after := rollupsOf(t, st, acme); after != rollupsBefore {
			t.Errorf("rollups changed by the purge: %+v → %+v", rollupsBefore, after)
		}
		// A second run finds nothing.
		if again, err := p.Purge(ctx); err != nil || again.ExpiredContent+again.ShreddedContent+again.Usage != 0 {
			t.Errorf("second run purged %+v, %v", again, err)
		}
	})
}

// Invoices of erased tenants are kept for the legal period after their
// billing period ends, then deleted with their lines; a live tenant's
// invoices are never purged.
func TestPurgeDeletesErasedTenantsInvoicesAfterTheLegalPeriod(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		now := time.Date(2036, 6, 1, 0, 0, 0, 0, time.UTC)
		live := mustTenant(t, st, "live", policy.Retention{})
		erased := uuid.New() // no tenant row: erased
		newInvoice := func(tenant uuid.UUID, end time.Time) uuid.UUID {
			inv, err := st.Client().Invoice.Create().SetTenantID(tenant).SetNumber(uuid.NewString()).
				SetPeriodStart(end.AddDate(0, -1, 0)).SetPeriodEnd(end).SetCurrency("USD").SetExchangeRateMicros(1_000_000).
				SetTotalMicros(10).SetTotalCurrencyMicros(10).SetRequests(1).Save(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Client().InvoiceLine.Create().SetInvoiceID(inv.ID).SetPosition(0).SetKind("input").
				SetAmountMicros(10).SetAmountCurrencyMicros(10).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			return inv.ID
		}
		old := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		gone := newInvoice(erased, old)
		keptRecent := newInvoice(erased, now.AddDate(-1, 0, 0))
		keptLive := newInvoice(live, old)
		p := privacy.NewPurger(st, nil, quiet())
		p.Now = func() time.Time { return now }
		p.InvoiceRetention = 10 * 365 * 24 * time.Hour
		stats, err := p.Purge(ctx)
		if err != nil || stats.Invoices != 1 {
			t.Fatalf("purged %+v, %v; want the one old invoice of the erased tenant", stats, err)
		}
		for id, want := range map[uuid.UUID]bool{gone: false, keptRecent: true, keptLive: true} {
			if ok, _ := st.Client().Invoice.Query().Where(invoice.ID(id)).Exist(ctx); ok != want {
				t.Errorf("invoice %s exists %v, want %v", id, ok, want)
			}
		}
		if n, _ := st.Client().InvoiceLine.Query().Count(ctx); n != 2 {
			t.Errorf("%d invoice lines left, want the 2 of the kept invoices", n)
		}
	})
}
