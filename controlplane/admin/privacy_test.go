package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/contentlog"
	"github.com/tollgate-dev/tollgate/controlplane/policy"
	"github.com/tollgate-dev/tollgate/controlplane/privacy"
	"github.com/tollgate-dev/tollgate/controlplane/privacy/privacytest"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/controlplane/usageingest"
	"github.com/tollgate-dev/tollgate/ent/auditevent"
	"github.com/tollgate-dev/tollgate/ent/notificationendpoint"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
)

func (h *harness) privacy() adminv1.PrivacyServiceClient {
	return adminv1.NewPrivacyServiceClient(h.conn)
}

// person is an account with a key, usage and kept content.
type person struct {
	id, email, name, keyPrefix, keyID, contentMarker string
}

// privacyFixture: tenant acme keeps content; alice and bob each have a key,
// usage with content, and are recipients of acme's e-mail notifications;
// acme has an invoice.
func privacyFixture(t *testing.T, h *harness) (tenantID string, alice, bob person) {
	t.Helper()
	ctx := context.Background()
	resp, err := h.tenants().CreateTenant(h.op(), &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{
		Slug: "acme", Name: "Acme Marker Corp", BillingEmail: "billing@acme-marker.example", BillingReference: "REF-MARKER-77"}})
	if err != nil {
		t.Fatal(err)
	}
	tenantID = resp.GetTenant().GetId()
	tid := uuid.MustParse(tenantID)
	if err := h.store.Client().GatewayPolicy.Create().SetTenantID(tid).
		SetSpec(policy.Spec{Retention: policy.Retention{Content: policy.RetentionFull, ContentDays: 30}}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	vault, err := contentlog.NewVault(h.keyring)
	if err != nil {
		t.Fatal(err)
	}
	ingest := usageingest.New(h.store, slog.New(slog.DiscardHandler)).KeepContent(contentlog.NewWriter(vault, 30, nil))
	mk := func(email, name string) person {
		a, err := h.accounts().CreateAccount(h.op(), &adminv1.CreateAccountRequest{Tenant: "acme", Account: &adminv1.Account{Email: email, Name: name}})
		if err != nil {
			t.Fatal(err)
		}
		k, err := h.keys().CreateKey(h.op(), &adminv1.CreateKeyRequest{Tenant: "acme", Key: &adminv1.Key{Name: "laptop", AccountId: a.GetAccount().GetId()}})
		if err != nil {
			t.Fatal(err)
		}
		p := person{id: a.GetAccount().GetId(), email: email, name: name, keyPrefix: k.GetKey().GetPrefix(), keyID: k.GetKey().GetId(),
			contentMarker: "prompt-of-" + strings.Split(email, "@")[0] + "-7f3a"}
		var recs []*usagev1.UsageRecord
		for range 3 {
			recs = append(recs, &usagev1.UsageRecord{RequestId: uuid.NewString(), TenantId: tenantID, KeyId: p.keyID, Model: "gpt-4o",
				InputTokens: 10, OutputTokens: 2, CostMicros: 5, StatusCode: 200, Time: timestamppb.New(time.Now()),
				Content: &usagev1.Content{RequestBody: []byte(`{"messages":[{"content":"` + p.contentMarker + `"}]}`), ResponseBody: []byte(`{"ok":true}`)}})
		}
		if _, err := ingest.Store(ctx, &usagev1.IngestRequest{Records: recs}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	alice = mk("alice@marker.example", "Alice Markerly")
	bob = mk("bob@marker.example", "Bob Markerson")
	ep, err := h.store.Client().NotificationEndpoint.Create().SetTenantID(tid).SetName("ops").SetKind(notificationendpoint.KindEmail).
		SetEmailRecipients([]string{alice.email, bob.email}).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.Client().Notification.Create().SetEventID(uuid.New()).SetEventType("key.expiring").SetTenantID(tid).SetEndpointID(ep.ID).
		SetData(json.RawMessage(`{"key_prefix":"` + alice.keyPrefix + `"}`)).SetNextAttemptAt(time.Now()).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.store.Client().Invoice.Create().SetTenantID(tid).SetNumber("INV-1").SetPeriodStart(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)).
		SetPeriodEnd(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)).SetCurrency("USD").SetExchangeRateMicros(1_000_000).
		SetTotalMicros(30).SetTotalCurrencyMicros(30).SetRequests(6).SetBillingName("Acme Marker Corp").
		SetBillingEmail("billing@acme-marker.example").SetBillingReference("REF-MARKER-77").Exec(ctx); err != nil {
		t.Fatal(err)
	}
	return tenantID, alice, bob
}

// export reads a whole export through the API.
func (h *harness) export(ctx context.Context, subj *adminv1.PrivacySubject) ([]privacy.Line, error) {
	stream, err := h.privacy().ExportData(ctx, &adminv1.ExportDataRequest{Subject: subj})
	if err != nil {
		return nil, err
	}
	var all bytes.Buffer
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		all.Write(msg.GetChunk())
	}
	var lines []privacy.Line
	dec := json.NewDecoder(&all)
	for dec.More() {
		var l privacy.Line
		if err := dec.Decode(&l); err != nil {
			return nil, err
		}
		lines = append(lines, l)
	}
	return lines, nil
}

func sections(lines []privacy.Line) map[string]int {
	out := map[string]int{}
	for _, l := range lines {
		out[l.Section]++
	}
	return out
}

func (h *harness) erase(ctx context.Context, subj *adminv1.PrivacySubject) *adminv1.EraseResponse {
	h.t.Helper()
	prep, err := h.privacy().PrepareErasure(ctx, &adminv1.PrepareErasureRequest{Subject: subj})
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := h.privacy().Erase(ctx, &adminv1.EraseRequest{Subject: subj, ConfirmationToken: prep.GetConfirmationToken()})
	if err != nil {
		h.t.Fatal(err)
	}
	return resp
}

func TestExportHoldsEverythingAboutTheSubjectWithContentDecrypted(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		tenantID, alice, bob := privacyFixture(t, h)
		lines, err := h.export(h.ctx(h.tenantAdmin("acme")), &adminv1.PrivacySubject{Tenant: "acme", AccountId: alice.id})
		if err != nil {
			t.Fatal(err)
		}
		got := sections(lines)
		want := map[string]int{"export": 1, "accounts": 1, "api_keys": 1, "usage_records": 3, "content_logs": 3}
		for s, n := range want {
			if got[s] != n {
				t.Errorf("section %s: %d records, want %d (all: %v)", s, got[s], n, got)
			}
		}
		raw, _ := json.Marshal(lines)
		if !bytes.Contains(raw, []byte(alice.contentMarker)) || !bytes.Contains(raw, []byte(alice.email)) {
			t.Error("the account's export lacks its decrypted content or its e-mail")
		}
		if bytes.Contains(raw, []byte(bob.email)) || bytes.Contains(raw, []byte(bob.contentMarker)) {
			t.Error("the account's export holds another account's data")
		}
		if bytes.Contains(raw, []byte(`"hash"`)) || bytes.Contains(raw, []byte(`"sealed"`)) {
			t.Error("the export holds hashes or sealed values")
		}
		whole, err := h.export(h.op(), &adminv1.PrivacySubject{Tenant: tenantID})
		if err != nil {
			t.Fatal(err)
		}
		got = sections(whole)
		for s, n := range map[string]int{"tenants": 1, "accounts": 2, "api_keys": 2, "usage_records": 6, "content_logs": 6, "invoices": 1, "notification_endpoints": 1} {
			if got[s] != n {
				t.Errorf("tenant export, section %s: %d records, want %d (all: %v)", s, got[s], n, got)
			}
		}
		// Exports are audited.
		n, err := st.Client().AuditEvent.Query().Where(auditevent.Action("privacy.export")).Count(context.Background())
		if err != nil || n != 2 {
			t.Errorf("%d export audit events, want 2 (%v)", n, err)
		}
	})
}

func TestEraseAccountLeavesNoTrace(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()
		_, alice, bob := privacyFixture(t, h)
		subj := &adminv1.PrivacySubject{Tenant: "acme", AccountId: alice.id}
		admin := h.ctx(h.tenantAdmin("acme"))

		// Two steps: no erasure without a token, nor with another caller's.
		_, err := h.privacy().Erase(h.op(), &adminv1.EraseRequest{Subject: subj})
		if v := violations(t, err); len(v) != 1 || v[0] != "confirmation_token" {
			t.Errorf("violations %v", v)
		}
		prep, err := h.privacy().PrepareErasure(admin, &adminv1.PrepareErasureRequest{Subject: subj})
		if err != nil {
			t.Fatal(err)
		}
		if p := prep.GetPlan(); p.GetAccounts() != 1 || p.GetKeys() != 1 || p.GetContentLogs() != 3 || p.GetUsageRecords() != 3 {
			t.Errorf("plan %v", p)
		}
		_, err = h.privacy().Erase(h.op(), &adminv1.EraseRequest{Subject: subj, ConfirmationToken: prep.GetConfirmationToken()})
		violations(t, err)
		_, err = h.privacy().Erase(admin, &adminv1.EraseRequest{Subject: &adminv1.PrivacySubject{Tenant: "acme", AccountId: bob.id}, ConfirmationToken: prep.GetConfirmationToken()})
		violations(t, err)
		usageBefore, _ := st.Client().UsageRecord.Query().Count(ctx)
		if _, err := h.privacy().Erase(admin, &adminv1.EraseRequest{Subject: subj, ConfirmationToken: prep.GetConfirmationToken()}); err != nil {
			t.Fatal(err)
		}

		privacytest.NoTrace(t, st, alice.email, alice.name, alice.keyPrefix, alice.contentMarker)
		// The scan does find what is still there.
		if found, err := privacytest.Scan(ctx, st, bob.email, bob.keyPrefix); err != nil || len(found) == 0 {
			t.Errorf("the scan does not find bob's data (%v): it proves nothing", err)
		}
		// Usage is kept for billing, linked to no one.
		if n, _ := st.Client().UsageRecord.Query().Count(ctx); n != usageBefore {
			t.Errorf("%d usage records after the erasure, want %d", n, usageBefore)
		}
		if n, _ := st.Client().UsageRecord.Query().Where(usagerecord.APIKeyID(uuid.MustParse(alice.keyID))).Count(ctx); n != 3 {
			t.Errorf("the account's usage: %d records, want 3 kept", n)
		}
		// The export of an erased account is empty: the API cannot find it,
		// and the exporter emits nothing for its ids.
		_, err = h.export(admin, subj)
		wantCode(t, err, codes.NotFound)
		lines := 0
		tenant, _ := h.tenants().GetTenant(h.op(), &adminv1.GetTenantRequest{Tenant: "acme"})
		err = privacy.NewExporter(st, nil).Export(ctx, privacy.Subject{TenantID: uuid.MustParse(tenant.GetTenant().GetId()), AccountID: uuid.MustParse(alice.id)},
			func(privacy.Line) error { lines++; return nil })
		if err != nil || lines != 0 {
			t.Errorf("export of the erased account: %d lines, %v", lines, err)
		}
		// Erasure is audited without the person's data.
		ev, err := st.Client().AuditEvent.Query().Where(auditevent.Action("privacy.erase")).Only(ctx)
		if err != nil || ev.TargetID != alice.id {
			t.Errorf("audit event %v, %v", ev, err)
		}
	})
}

func TestEraseTenantLeavesNoTraceAndItsContentCannotBeDecrypted(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()
		tenantID, alice, bob := privacyFixture(t, h)
		tid := uuid.MustParse(tenantID)
		backup, err := st.Client().ContentLog.Query().All(ctx)
		if err != nil || len(backup) != 6 {
			t.Fatalf("content rows %d, %v", len(backup), err)
		}
		// Only the operator erases a whole tenant.
		_, err = h.privacy().PrepareErasure(h.ctx(h.tenantAdmin("acme")), &adminv1.PrepareErasureRequest{Subject: &adminv1.PrivacySubject{Tenant: "acme"}})
		wantCode(t, err, codes.PermissionDenied)
		resp := h.erase(h.op(), &adminv1.PrivacySubject{Tenant: "acme"})
		if e := resp.GetErased(); e.GetAccounts() != 2 || e.GetKeys() != 2 || e.GetContentLogs() != 6 || e.GetInvoices() != 1 {
			t.Errorf("erased %v", e)
		}
		privacytest.NoTrace(t, st, alice.email, alice.name, alice.keyPrefix, bob.email, bob.name, bob.keyPrefix,
			"Acme Marker Corp", "billing@acme-marker.example", "REF-MARKER-77", alice.contentMarker, bob.contentMarker)
		if n, _ := st.Client().ContentLog.Query().Count(ctx); n != 0 {
			t.Errorf("%d content rows left", n)
		}
		// A copy of the content taken before (a backup) cannot be decrypted
		// with anything the store holds.
		vault, _ := contentlog.NewVault(h.keyring)
		if _, err := vault.Lookup(ctx, st.Client().DataKey, tid); !errors.Is(err, contentlog.ErrNoDataKey) {
			t.Fatalf("the erased tenant still has a data key: %v", err)
		}
		if n, _ := st.Client().UsageRecord.Query().Where(usagerecord.TenantID(tid)).Count(ctx); n != 6 {
			t.Errorf("usage kept: %d records, want 6", n)
		}
		inv, err := st.Client().Invoice.Query().Only(ctx)
		if err != nil || inv.TotalMicros != 30 || inv.BillingEmail != "" {
			t.Errorf("invoice after erasure: %v, %v", inv, err)
		}
		lines := 0
		if err := privacy.NewExporter(st, vault).Export(ctx, privacy.Subject{TenantID: tid}, func(privacy.Line) error { lines++; return nil }); err != nil || lines != 0 {
			t.Errorf("export of the erased tenant: %d lines, %v", lines, err)
		}
	})
}

func TestCorrectAndRestrictAreAuditedByFieldName(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()
		_, alice, _ := privacyFixture(t, h)
		admin := h.ctx(h.tenantAdmin("acme"))
		resp, err := h.privacy().CorrectData(admin, &adminv1.CorrectDataRequest{
			Subject:    &adminv1.PrivacySubject{Tenant: "acme", AccountId: alice.id},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"email", "name"}},
			Email:      "Alice.New@Marker.example", Name: "Alice Renamed"})
		if err != nil || len(resp.GetChangedFields()) != 2 {
			t.Fatalf("CorrectData = %v, %v", resp, err)
		}
		a, _ := h.accounts().GetAccount(admin, &adminv1.GetAccountRequest{Id: alice.id})
		if a.GetAccount().GetEmail() != "alice.new@marker.example" || a.GetAccount().GetName() != "Alice Renamed" {
			t.Errorf("account after correction: %v", a.GetAccount())
		}
		_, err = h.privacy().CorrectData(admin, &adminv1.CorrectDataRequest{
			Subject:    &adminv1.PrivacySubject{Tenant: "acme", AccountId: alice.id},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"billing_email", "email"}}, Email: "not an address"})
		if v := violations(t, err); len(v) != 1 {
			t.Errorf("violations %v", v)
		}
		if _, err := h.privacy().CorrectData(admin, &adminv1.CorrectDataRequest{
			Subject:    &adminv1.PrivacySubject{Tenant: "acme"},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"billing_email"}}, BillingEmail: "ap@acme.example"}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.privacy().Restrict(admin, &adminv1.RestrictRequest{Subject: &adminv1.PrivacySubject{Tenant: "acme", AccountId: alice.id}}); err != nil {
			t.Fatal(err)
		}
		a, _ = h.accounts().GetAccount(admin, &adminv1.GetAccountRequest{Id: alice.id})
		if !a.GetAccount().GetRestricted() {
			t.Error("the account is not restricted")
		}
		_, err = h.privacy().Restrict(admin, &adminv1.RestrictRequest{Subject: &adminv1.PrivacySubject{Tenant: "acme"}})
		wantCode(t, err, codes.PermissionDenied)
		if _, err := h.privacy().Restrict(h.op(), &adminv1.RestrictRequest{Subject: &adminv1.PrivacySubject{Tenant: "acme"}}); err != nil {
			t.Fatal(err)
		}
		tn, _ := h.tenants().GetTenant(h.op(), &adminv1.GetTenantRequest{Tenant: "acme"})
		if tn.GetTenant().GetStatus() != adminv1.TenantStatus_TENANT_STATUS_RESTRICTED {
			t.Errorf("tenant status %v", tn.GetTenant().GetStatus())
		}
		if _, err := h.privacy().Unrestrict(h.op(), &adminv1.UnrestrictRequest{Subject: &adminv1.PrivacySubject{Tenant: "acme"}}); err != nil {
			t.Fatal(err)
		}
		// The audit log names fields, never the values.
		events, err := st.Client().AuditEvent.Query().Where(auditevent.ActionHasPrefix("privacy.")).All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		actions := map[string][]string{}
		for _, e := range events {
			actions[e.Action] = append(actions[e.Action], e.ChangedFields...)
		}
		if len(actions["privacy.correct"]) != 3 || len(actions["privacy.restrict"]) != 2 || len(actions["privacy.unrestrict"]) != 1 {
			t.Errorf("audited %v", actions)
		}
		found, err := privacytest.Scan(ctx, st, "alice.new@marker.example", "Alice Renamed", "ap@acme.example")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range found {
			if f.Table == "audit_events" {
				t.Errorf("the audit log holds a corrected value: %s", f)
			}
		}
	})
}

func TestRestrictionCarriesItsReasonUntilLifted(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()
		_, alice, _ := privacyFixture(t, h)
		admin := h.ctx(h.tenantAdmin("acme"))
		acct := &adminv1.PrivacySubject{Tenant: "acme", AccountId: alice.id}
		whole := &adminv1.PrivacySubject{Tenant: "acme"}
		reasonOf := func() (string, string) {
			a, err := h.accounts().GetAccount(admin, &adminv1.GetAccountRequest{Id: alice.id})
			if err != nil {
				t.Fatal(err)
			}
			tn, err := h.tenants().GetTenant(admin, &adminv1.GetTenantRequest{Tenant: "acme"})
			if err != nil {
				t.Fatal(err)
			}
			return a.GetAccount().GetRestrictionReason(), tn.GetTenant().GetRestrictionReason()
		}

		_, err := h.privacy().Restrict(admin, &adminv1.RestrictRequest{Subject: acct, Reason: strings.Repeat("x", 501)})
		wantCode(t, err, codes.InvalidArgument)
		_, err = h.privacy().Restrict(admin, &adminv1.RestrictRequest{Subject: acct, Reason: "two\nlines"})
		wantCode(t, err, codes.InvalidArgument)

		if _, err := h.privacy().Restrict(admin, &adminv1.RestrictRequest{Subject: acct, Reason: "  laptop-marker-91 stolen  "}); err != nil {
			t.Fatal(err)
		}
		if a, _ := reasonOf(); a != "laptop-marker-91 stolen" {
			t.Errorf("account's reason %q", a)
		}
		// A new reason for what is already restricted changes the reason alone.
		if _, err := h.privacy().Restrict(admin, &adminv1.RestrictRequest{Subject: acct, Reason: "laptop-marker-91 found, checking"}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.privacy().Restrict(h.op(), &adminv1.RestrictRequest{Subject: whole, Reason: "invoice-marker-92 unpaid"}); err != nil {
			t.Fatal(err)
		}
		if a, tn := reasonOf(); a != "laptop-marker-91 found, checking" || tn != "invoice-marker-92 unpaid" {
			t.Errorf("reasons %q, %q", a, tn)
		}
		// Lifting clears them; so does the operator setting the tenant's status.
		if _, err := h.privacy().Unrestrict(admin, &adminv1.UnrestrictRequest{Subject: acct}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.tenants().UpdateTenant(h.op(), &adminv1.UpdateTenantRequest{
			Tenant: &adminv1.Tenant{Id: "acme", Status: adminv1.TenantStatus_TENANT_STATUS_SUSPENDED}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"status"}}}); err != nil {
			t.Fatal(err)
		}
		if a, tn := reasonOf(); a != "" || tn != "" {
			t.Errorf("reasons after lifting %q, %q", a, tn)
		}
		// A suspended tenant is not restricted from here: lift the suspension first.
		_, err = h.privacy().Restrict(h.op(), &adminv1.RestrictRequest{Subject: whole, Reason: "again"})
		wantCode(t, err, codes.FailedPrecondition)

		events, err := st.Client().AuditEvent.Query().Where(auditevent.ActionHasPrefix("privacy.")).All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range events {
			got = append(got, e.Action+":"+strings.Join(e.ChangedFields, ","))
		}
		want := []string{"privacy.restrict:restricted,restriction_reason", "privacy.restrict:restriction_reason",
			"privacy.restrict:status,restriction_reason", "privacy.unrestrict:restricted,restriction_reason"}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("audited %v, want %v", got, want)
		}
		found, err := privacytest.Scan(ctx, st, "laptop-marker-91", "invoice-marker-92")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range found {
			if f.Table == "audit_events" {
				t.Errorf("the audit log holds a reason: %s", f)
			}
		}
	})
}
