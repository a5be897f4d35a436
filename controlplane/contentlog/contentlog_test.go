package contentlog_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/contentlog"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/policy"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/controlplane/usageingest"
	"github.com/tollgate-dev/tollgate/ent"
	entcontentlog "github.com/tollgate-dev/tollgate/ent/contentlog"
)

func masterRing(t *testing.T, id string) *keyring.Keyring {
	t.Helper()
	secret := make([]byte, keyring.SecretSize)
	_, _ = rand.Read(secret)
	k, err := keyring.New(keyring.Key{ID: id, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// tenantWith creates a tenant whose policy keeps ret.
func tenantWith(t *testing.T, st *store.Store, slug string, ret policy.Retention) uuid.UUID {
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

func recordWithContent(tenantID uuid.UUID, at time.Time, marker string) *usagev1.UsageRecord {
	return &usagev1.UsageRecord{
		RequestId: uuid.NewString(), TenantId: tenantID.String(), Model: "gpt-4o", StatusCode: 200,
		Time: timestamppb.New(at),
		Content: &usagev1.Content{
			RequestBody:  []byte(`{"messages":[{"role":"user","content":"` + marker + `"}]}`),
			ResponseBody: []byte(`{"choices":[{"message":{"content":"reply to ` + marker + `"}}]}`),
		},
	}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestContentIsKeptSealedOnlyWhereThePolicyKeepsIt(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		vault, err := contentlog.NewVault(masterRing(t, "m1"))
		if err != nil {
			t.Fatal(err)
		}
		full := tenantWith(t, st, "full", policy.Retention{Content: policy.RetentionFull, ContentDays: 90})
		meta := tenantWith(t, st, "meta", policy.Retention{Content: policy.RetentionMetadata})
		none := tenantWith(t, st, "none", policy.Retention{})
		srv := usageingest.New(st, quiet()).KeepContent(contentlog.NewWriter(vault, 7, quiet()))
		now := time.Now().UTC().Truncate(time.Microsecond)
		kept := recordWithContent(full, now, "marker-full")
		batch := &usagev1.IngestRequest{BatchId: 1, Records: []*usagev1.UsageRecord{
			kept,
			recordWithContent(meta, now, "marker-meta"),
			recordWithContent(none, now, "marker-none"),
			// Past the operator's 7-day cap already: not kept.
			recordWithContent(full, now.Add(-8*24*time.Hour), "marker-old"),
		}}
		for range 2 { // a resent batch stores its content once
			if ack, err := srv.Store(ctx, batch); err != nil || ack.GetAccepted() != 4 {
				t.Fatalf("Store = %v, %v", ack, err)
			}
		}
		rows, err := st.Client().ContentLog.Query().All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].RequestID != kept.GetRequestId() || rows[0].TenantID != full {
			t.Fatalf("content rows = %v, want only request %s", rows, kept.GetRequestId())
		}
		row := rows[0]
		if want := now.Add(7 * 24 * time.Hour); !row.ExpiresAt.Equal(want) {
			t.Errorf("expires_at = %v, want the arrival + the operator's cap of 7 days (%v)", row.ExpiresAt, want)
		}
		if bytes.Contains(row.Sealed, []byte("marker-full")) {
			t.Error("the stored content is readable without its key")
		}
		k, err := vault.Lookup(ctx, st.Client().DataKey, full)
		if err != nil {
			t.Fatal(err)
		}
		c, err := k.Open(row)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(c.GetRequestBody(), []byte("marker-full")) || !bytes.Contains(c.GetResponseBody(), []byte("reply to marker-full")) {
			t.Errorf("opened content = %q / %q", c.GetRequestBody(), c.GetResponseBody())
		}
		if row.RequestBytes != int64(len(kept.GetContent().GetRequestBody())) || row.ResponseBytes != int64(len(kept.GetContent().GetResponseBody())) {
			t.Errorf("sizes = %d/%d", row.RequestBytes, row.ResponseBytes)
		}
		// The tenants that keep nothing got no data key either.
		for _, id := range []uuid.UUID{meta, none} {
			if _, err := vault.Lookup(ctx, st.Client().DataKey, id); !errors.Is(err, contentlog.ErrNoDataKey) {
				t.Errorf("tenant without content has a data key: %v", err)
			}
		}
	})
}

func TestErasedTenantContentCannotBeDecrypted(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		master := masterRing(t, "m1")
		vault, _ := contentlog.NewVault(master)
		tenant := tenantWith(t, st, "acme", policy.Retention{Content: policy.RetentionFull, ContentDays: 30})
		other := tenantWith(t, st, "other", policy.Retention{Content: policy.RetentionFull, ContentDays: 30})
		srv := usageingest.New(st, quiet()).KeepContent(contentlog.NewWriter(vault, 30, quiet()))
		now := time.Now().UTC()
		if _, err := srv.Store(ctx, &usagev1.IngestRequest{Records: []*usagev1.UsageRecord{
			recordWithContent(tenant, now, "secret-plan"), recordWithContent(other, now, "other-plan"),
		}}); err != nil {
			t.Fatal(err)
		}
		// A backup taken before the erasure: every content row and the
		// other tenant's data key row.
		backup, err := st.Client().ContentLog.Query().Where(entcontentlog.TenantID(tenant)).All(ctx)
		if err != nil || len(backup) != 1 {
			t.Fatalf("content rows = %v, %v", backup, err)
		}
		otherKeyRow, err := st.Client().DataKey.Query().All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.InTx(ctx, func(tx *ent.Tx) error {
			shredded, err := contentlog.Shred(ctx, tx, tenant)
			if err == nil && !shredded {
				t.Error("Shred found no data key")
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := vault.Lookup(ctx, st.Client().DataKey, tenant); !errors.Is(err, contentlog.ErrNoDataKey) {
			t.Fatalf("Lookup after Shred = %v, want ErrNoDataKey", err)
		}
		// A fresh key for the same tenant (it sends content again) opens
		// nothing of the old content.
		var fresh *contentlog.DataKey
		if err := st.InTx(ctx, func(tx *ent.Tx) (err error) { fresh, err = vault.ForTenant(ctx, tx, tenant); return err }); err != nil {
			t.Fatal(err)
		}
		if _, err := fresh.Open(backup[0]); err == nil {
			t.Fatal("a new data key opened the erased tenant's content")
		}
		// Nor does any other tenant's key, with or without the id check.
		for _, row := range otherKeyRow {
			if row.TenantID == tenant {
				continue
			}
			k, err := vault.Lookup(ctx, st.Client().DataKey, row.TenantID)
			if err != nil {
				t.Fatal(err)
			}
			forged := *backup[0]
			forged.TenantID, forged.DataKeyID = k.TenantID, k.ID
			if c, err := k.Open(&forged); err == nil || (!errors.Is(err, keyring.ErrDecrypt) && !errors.Is(err, keyring.ErrUnknownKey)) {
				t.Fatalf("another tenant's key on the erased content: %v, %v; want a decryption error", c, err)
			}
		}
	})
}

func TestRewrapMovesDataKeysToTheActiveMasterKey(t *testing.T) {
	st := storetest.SQLite(t)
	ctx := context.Background()
	oldKey := make([]byte, keyring.SecretSize)
	newKey := make([]byte, keyring.SecretSize)
	_, _ = rand.Read(oldKey)
	_, _ = rand.Read(newKey)
	before, _ := keyring.New(keyring.Key{ID: "old", Secret: oldKey})
	after, _ := keyring.New(keyring.Key{ID: "new", Secret: newKey}, keyring.Key{ID: "old", Secret: oldKey})
	onlyNew, _ := keyring.New(keyring.Key{ID: "new", Secret: newKey})
	tenant := tenantWith(t, st, "acme", policy.Retention{})
	v1, _ := contentlog.NewVault(before)
	if err := st.InTx(ctx, func(tx *ent.Tx) error { _, err := v1.ForTenant(ctx, tx, tenant); return err }); err != nil {
		t.Fatal(err)
	}
	v3, _ := contentlog.NewVault(onlyNew)
	if _, err := v3.Lookup(ctx, st.Client().DataKey, tenant); !errors.Is(err, keyring.ErrUnknownKey) {
		t.Fatalf("before the rewrap the new master key alone opens the data key: %v", err)
	}
	v2, _ := contentlog.NewVault(after)
	var n int
	if err := st.InTx(ctx, func(tx *ent.Tx) (err error) { n, err = v2.Rewrap(ctx, tx, 10); return err }); err != nil || n != 1 {
		t.Fatalf("Rewrap = %d, %v", n, err)
	}
	if _, err := v3.Lookup(ctx, st.Client().DataKey, tenant); err != nil {
		t.Fatalf("after the rewrap the old master key is still needed: %v", err)
	}
}
