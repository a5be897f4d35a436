package admin

import (
	"bytes"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

func TestKeySecretIsShownOnceAndStoredOnlyAsHash(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		tn := h.createTenant("acme")
		created := h.createKey(h.op(), "acme", "ci")
		sec := created.GetSecret()
		if err := secret.Check(secret.APIKey, sec); err != nil {
			t.Fatalf("secret %q is not an API key: %v", secret.Redact(sec), err)
		}
		if !strings.HasPrefix(sec, created.GetKey().GetPrefix()) {
			t.Errorf("prefix %q is not the start of the secret", created.GetKey().GetPrefix())
		}
		if created.GetKey().GetTenantId() != tn.GetId() {
			t.Errorf("key tenant = %s, want %s", created.GetKey().GetTenantId(), tn.GetId())
		}

		// Every read afterwards: the secret appears in none of them.
		var reads []proto.Message
		got, err := h.keys().GetKey(h.op(), &adminv1.GetKeyRequest{Id: created.GetKey().GetId()})
		if err != nil {
			t.Fatal(err)
		}
		reads = append(reads, got)
		list, err := h.keys().ListKeys(h.op(), &adminv1.ListKeysRequest{Tenant: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.GetKeys()) != 1 {
			t.Fatalf("listed %d keys, want 1", len(list.GetKeys()))
		}
		reads = append(reads, list)
		ev, err := h.audit().ListAuditEvents(h.op(), &adminv1.ListAuditEventsRequest{Tenant: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		reads = append(reads, ev)
		for _, m := range reads {
			if strings.Contains(protojson.Format(m), sec) {
				t.Errorf("%T contains the key's secret", m)
			}
		}
		if strings.Contains(h.logs.String(), sec) {
			t.Error("the log contains the key's secret")
		}
		assertNotInDatabase(t, st, sec)
	})
}

// assertNotInDatabase scans every text and binary column of every table for
// needle.
func assertNotInDatabase(t *testing.T, st *store.Store, needle string) {
	t.Helper()
	tables := map[store.Dialect]string{
		store.SQLite:      `SELECT name FROM sqlite_master WHERE type = 'table'`,
		store.Postgres:    `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`,
		store.CockroachDB: `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`,
	}[st.Dialect()]
	names := queryStrings(t, st.DB(), tables)
	if len(names) < 5 {
		t.Fatalf("found only tables %v; the scan would prove nothing", names)
	}
	for _, table := range names {
		assertNotInTable(t, st.DB(), table, needle)
	}
}

func assertNotInTable(t *testing.T, db *sql.DB, table, needle string) {
	t.Helper()
	rows, err := db.Query(fmt.Sprintf(`SELECT * FROM %q`, table))
	if err != nil {
		t.Fatalf("reading %s: %v", table, err)
	}
	defer closeRows(t, rows)
	cols, err := rows.Columns()
	if err != nil {
		t.Fatalf("reading %s: %v", table, err)
	}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			var b []byte
			switch v := v.(type) {
			case string:
				b = []byte(v)
			case []byte:
				b = v
			}
			if bytes.Contains(b, []byte(needle)) {
				t.Errorf("table %s column %s holds the secret", table, cols[i])
			}
		}
	}
	// A scan cut short by an error would prove nothing.
	if err := rows.Err(); err != nil {
		t.Fatalf("reading %s: %v", table, err)
	}
}

func queryStrings(t *testing.T, db *sql.DB, q string) []string {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer closeRows(t, rows)
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// closeRows closes rows as a test helper returns (t.Fatal included) and
// reports a failure to close.
func closeRows(t *testing.T, rows *sql.Rows) {
	t.Helper()
	if err := rows.Close(); err != nil {
		t.Errorf("closing rows: %v", err)
	}
}

func TestTenantLifecycleIsAudited(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		tn := h.createTenant("acme")
		if tn.GetName() != "acme" || tn.GetStatus() != adminv1.TenantStatus_TENANT_STATUS_ACTIVE {
			t.Errorf("defaults: name %q status %v", tn.GetName(), tn.GetStatus())
		}
		_, err := h.tenants().CreateTenant(h.op(), &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme"}})
		wantCode(t, err, codes.AlreadyExists)

		up, err := h.tenants().UpdateTenant(h.op(), &adminv1.UpdateTenantRequest{
			Tenant:     &adminv1.Tenant{Slug: "acme", Name: "Acme Inc.", Plan: "ignored", Status: adminv1.TenantStatus_TENANT_STATUS_SUSPENDED},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name", "status"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if up.GetTenant().GetName() != "Acme Inc." || up.GetTenant().GetStatus() != adminv1.TenantStatus_TENANT_STATUS_SUSPENDED || up.GetTenant().GetPlan() != "" {
			t.Errorf("after update: %v", up.GetTenant())
		}
		if _, err := h.tenants().DeleteTenant(h.op(), &adminv1.DeleteTenantRequest{Tenant: tn.GetId()}); err != nil {
			t.Fatal(err)
		}
		_, err = h.tenants().GetTenant(h.op(), &adminv1.GetTenantRequest{Tenant: "acme"})
		wantCode(t, err, codes.NotFound)

		ev, err := h.audit().ListAuditEvents(h.op(), &adminv1.ListAuditEventsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, e := range ev.GetEvents() {
			actions = append(actions, e.GetAction())
			if e.GetActor() != "operator" || e.GetTargetId() != tn.GetId() {
				t.Errorf("event %v: wrong actor or target", e)
			}
		}
		if got, want := strings.Join(actions, ","), "tenant.delete,tenant.update,tenant.create"; got != want {
			t.Errorf("audit actions (newest first) = %s, want %s", got, want)
		}
		if got := strings.Join(ev.GetEvents()[1].GetChangedFields(), ","); got != "name,status" {
			t.Errorf("changed fields = %s", got)
		}
		if h.changes != 3 {
			t.Errorf("change notifications = %d, want 3 (one per committed mutation)", h.changes)
		}
	})
}

func TestKeyRevokeUpdateAndExpiry(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		h.createTenant("acme")
		k := h.createKey(h.op(), "acme", "ci").GetKey()
		exp := timestamppb.New(time.Now().Add(48 * time.Hour))
		up, err := h.keys().UpdateKey(h.op(), &adminv1.UpdateKeyRequest{
			Key:        &adminv1.Key{Id: k.GetId(), AllowedModels: []string{"gpt-4o-mini"}, ExpireTime: exp},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"allowed_models", "expire_time"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := up.GetKey(); len(got.GetAllowedModels()) != 1 || got.GetExpireTime().AsTime().Sub(exp.AsTime()).Abs() > time.Millisecond {
			t.Errorf("after update: %v", got)
		}
		rv, err := h.keys().RevokeKey(h.op(), &adminv1.RevokeKeyRequest{Id: k.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		if rv.GetKey().GetRevokeTime() == nil {
			t.Fatal("revoked key has no revoke_time")
		}
		// Revoking twice is harmless and keeps the first time.
		rv2, err := h.keys().RevokeKey(h.op(), &adminv1.RevokeKeyRequest{Id: k.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		if !rv2.GetKey().GetRevokeTime().AsTime().Equal(rv.GetKey().GetRevokeTime().AsTime()) {
			t.Error("second revoke moved revoke_time")
		}
		_, err = h.keys().UpdateKey(h.op(), &adminv1.UpdateKeyRequest{
			Key: &adminv1.Key{Id: k.GetId(), Name: "x"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}},
		})
		wantCode(t, err, codes.FailedPrecondition)

		list, err := h.keys().ListKeys(h.op(), &adminv1.ListKeysRequest{Tenant: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.GetKeys()) != 0 {
			t.Errorf("revoked key listed without include_revoked")
		}
		list, err = h.keys().ListKeys(h.op(), &adminv1.ListKeysRequest{Tenant: "acme", IncludeRevoked: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.GetKeys()) != 1 {
			t.Errorf("include_revoked listed %d keys, want 1", len(list.GetKeys()))
		}
	})
}

func TestListPagination(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		h.createTenant("acme")
		want := map[string]bool{}
		for i := range 7 {
			want[h.createKey(h.op(), "acme", fmt.Sprintf("k%d", i)).GetKey().GetId()] = true
		}
		seen := map[string]bool{}
		token, pages := "", 0
		for {
			resp, err := h.keys().ListKeys(h.op(), &adminv1.ListKeysRequest{Tenant: "acme", PageSize: 3, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, k := range resp.GetKeys() {
				if seen[k.GetId()] {
					t.Errorf("key %s on two pages", k.GetId())
				}
				seen[k.GetId()] = true
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		if pages != 3 || len(seen) != len(want) {
			t.Errorf("got %d keys on %d pages, want 7 on 3", len(seen), pages)
		}
		_, err := h.keys().ListKeys(h.op(), &adminv1.ListKeysRequest{Tenant: "acme", PageToken: "garbage"})
		if f := violations(t, err); f[0] != "page_token" {
			t.Errorf("violations %v", f)
		}
	})
}
