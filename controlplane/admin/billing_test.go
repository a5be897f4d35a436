package admin

import (
	"context"
	"encoding/csv"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/billing"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

func (h *harness) billing() adminv1.BillingServiceClient {
	return adminv1.NewBillingServiceClient(h.conn)
}

// invoiceMarch makes tenant's invoice for March 2026 (day0's month) as the
// monthly job would, as a draft.
func (h *harness) invoiceMarch(tenant string) string {
	h.t.Helper()
	svc := billing.New(billing.Config{Store: h.store})
	inv, err := svc.CreateInvoice(context.Background(), uuid.MustParse(tenant), day0, false)
	if err != nil {
		h.t.Fatal(err)
	}
	return inv.ID.String()
}

func TestInvoicesThroughTheAPI(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		f := newUsageFixture(h)
		acmeInv, globexInv := h.invoiceMarch(f.acme.GetId()), h.invoiceMarch(f.globex.GetId())

		// The operator sees both, newest period first, one page at a time.
		all, err := h.billing().ListInvoices(h.op(), &adminv1.ListInvoicesRequest{PageSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		next, err := h.billing().ListInvoices(h.op(), &adminv1.ListInvoicesRequest{PageSize: 1, PageToken: all.GetNextPageToken()})
		if err != nil {
			t.Fatal(err)
		}
		if got := []string{all.GetInvoices()[0].GetId(), next.GetInvoices()[0].GetId()}; !slices.Contains(got, acmeInv) || !slices.Contains(got, globexInv) || next.GetNextPageToken() != "" {
			t.Errorf("pages %v (next %q)", got, next.GetNextPageToken())
		}

		got, err := h.billing().GetInvoice(h.op(), &adminv1.GetInvoiceRequest{Id: acmeInv})
		if err != nil {
			t.Fatal(err)
		}
		inv := got.GetInvoice()
		var lines int64
		for _, l := range inv.GetLines() {
			lines += l.GetAmountMicros()
		}
		if inv.GetTotalMicros() != 10600 || lines != 10600 || inv.GetRequests() != 5 || inv.GetStatus() != adminv1.InvoiceStatus_INVOICE_STATUS_DRAFT ||
			inv.GetCurrency() != "USD" || inv.GetNumber() != "TG-202603-acme" {
			t.Errorf("acme's invoice: %v", inv)
		}

		// Exports.
		js, err := h.billing().ExportInvoice(h.op(), &adminv1.ExportInvoiceRequest{Id: acmeInv, Format: adminv1.InvoiceFormat_INVOICE_FORMAT_JSON})
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON adminv1.Invoice
		if err := protojson.Unmarshal(js.GetContent(), &fromJSON); err != nil || !proto.Equal(&fromJSON, inv) || js.GetFilename() != "TG-202603-acme.json" {
			t.Errorf("JSON export (%v) is not the invoice: %s", err, js.GetContent())
		}
		cs, err := h.billing().ExportInvoice(h.op(), &adminv1.ExportInvoiceRequest{Id: acmeInv, Format: adminv1.InvoiceFormat_INVOICE_FORMAT_CSV})
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(strings.NewReader(string(cs.GetContent()))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		last := rows[len(rows)-1]
		if !slices.Equal(rows[0], billing.CSVHeader) || len(rows) != len(inv.GetLines())+2 || last[4] != "total" || last[8] != "0.010600" || cs.GetContentType() != "text/csv" {
			t.Errorf("CSV export:\n%s", cs.GetContent())
		}

		// Verification against the records.
		v, err := h.billing().VerifyInvoice(h.op(), &adminv1.VerifyInvoiceRequest{Id: acmeInv})
		if err != nil || !v.GetMatches() || v.GetRecomputedTotalMicros() != 10600 || v.GetPendingLateRequests() != 0 {
			t.Errorf("verify: %v %v", v, err)
		}

		// A March record arriving now is late: March's invoice still
		// matches and counts it pending; April's bills it on a line that
		// names March, in the JSON and the CSV.
		h.addUsage(use{f.acme.GetId(), f.acmeKey1, "gpt-4o", "openai", day0.Add(3 * time.Hour), 10, 1, 20, 200})
		v, err = h.billing().VerifyInvoice(h.op(), &adminv1.VerifyInvoiceRequest{Id: acmeInv})
		if err != nil || !v.GetMatches() || v.GetPendingLateRequests() != 1 {
			t.Errorf("verify after a late record: %v %v", v, err)
		}
		april, err := billing.New(billing.Config{Store: h.store}).CreateInvoice(context.Background(), uuid.MustParse(f.acme.GetId()), day0.AddDate(0, 1, 0), false)
		if err != nil {
			t.Fatal(err)
		}
		ap, err := h.billing().GetInvoice(h.op(), &adminv1.GetInvoiceRequest{Id: april.ID.String()})
		if err != nil {
			t.Fatal(err)
		}
		var priorLines int
		for _, l := range ap.GetInvoice().GetLines() {
			if l.GetServicePeriodStartTime() == nil || !l.GetServicePeriodStartTime().AsTime().Equal(day0) {
				t.Errorf("April's line %v does not name March", l)
			}
			priorLines++
		}
		if priorLines == 0 || ap.GetInvoice().GetTotalMicros() != 20 || ap.GetInvoice().GetRequests() != 1 {
			t.Errorf("April's invoice: %v", ap.GetInvoice())
		}
		apCSV, err := h.billing().ExportInvoice(h.op(), &adminv1.ExportInvoiceRequest{Id: april.ID.String(), Format: adminv1.InvoiceFormat_INVOICE_FORMAT_CSV})
		if err != nil || !strings.Contains(string(apCSV.GetContent()), ",2026-03-01\n") {
			t.Errorf("April's CSV (%v):\n%s", err, apCSV.GetContent())
		}
		for _, id := range []string{acmeInv, april.ID.String()} {
			v, err = h.billing().VerifyInvoice(h.op(), &adminv1.VerifyInvoiceRequest{Id: id})
			if err != nil || !v.GetMatches() || v.GetPendingLateRequests() != 0 {
				t.Errorf("verify %s once the late record is billed: %v %v", id, v, err)
			}
		}

		// A tenant admin reads its own invoices only, and moves none.
		admin := h.ctx(f.acmeAdmin)
		own, err := h.billing().ListInvoices(admin, &adminv1.ListInvoicesRequest{})
		if err != nil || len(own.GetInvoices()) != 2 || own.GetInvoices()[1].GetId() != acmeInv {
			t.Errorf("acme's admin lists %v (%v)", own.GetInvoices(), err)
		}
		_, err = h.billing().GetInvoice(admin, &adminv1.GetInvoiceRequest{Id: globexInv})
		wantCode(t, err, codes.NotFound)
		_, err = h.billing().ExportInvoice(admin, &adminv1.ExportInvoiceRequest{Id: globexInv, Format: adminv1.InvoiceFormat_INVOICE_FORMAT_CSV})
		wantCode(t, err, codes.NotFound)
		_, err = h.billing().ListInvoices(admin, &adminv1.ListInvoicesRequest{Tenant: "globex"})
		wantCode(t, err, codes.NotFound)
		_, err = h.billing().TransitionInvoice(admin, &adminv1.TransitionInvoiceRequest{Id: globexInv, Status: adminv1.InvoiceStatus_INVOICE_STATUS_VOID})
		wantCode(t, err, codes.NotFound)
		_, err = h.billing().TransitionInvoice(admin, &adminv1.TransitionInvoiceRequest{Id: acmeInv, Status: adminv1.InvoiceStatus_INVOICE_STATUS_PAID})
		wantCode(t, err, codes.PermissionDenied)

		// The operator: draft → issued → paid; nothing after paid.
		for _, to := range []adminv1.InvoiceStatus{adminv1.InvoiceStatus_INVOICE_STATUS_ISSUED, adminv1.InvoiceStatus_INVOICE_STATUS_PAID} {
			resp, err := h.billing().TransitionInvoice(h.op(), &adminv1.TransitionInvoiceRequest{Id: acmeInv, Status: to})
			if err != nil || resp.GetInvoice().GetStatus() != to {
				t.Fatalf("→ %v: %v %v", to, resp, err)
			}
		}
		_, err = h.billing().TransitionInvoice(h.op(), &adminv1.TransitionInvoiceRequest{Id: acmeInv, Status: adminv1.InvoiceStatus_INVOICE_STATUS_VOID})
		wantCode(t, err, codes.FailedPrecondition)
		paid, err := h.billing().ListInvoices(h.op(), &adminv1.ListInvoicesRequest{Status: adminv1.InvoiceStatus_INVOICE_STATUS_PAID})
		if err != nil || len(paid.GetInvoices()) != 1 || paid.GetInvoices()[0].GetPayTime() == nil || paid.GetInvoices()[0].GetIssueTime() == nil {
			t.Errorf("paid invoices: %v (%v)", paid.GetInvoices(), err)
		}

		// Bad input, every field at once.
		_, err = h.billing().TransitionInvoice(h.op(), &adminv1.TransitionInvoiceRequest{Id: "x", Status: adminv1.InvoiceStatus_INVOICE_STATUS_DRAFT})
		if got := violations(t, err); !slices.Equal(got, []string{"id", "status"}) {
			t.Errorf("violations %v", got)
		}
		_, err = h.billing().ExportInvoice(h.op(), &adminv1.ExportInvoiceRequest{Id: "x"})
		if got := violations(t, err); !slices.Equal(got, []string{"id", "format"}) {
			t.Errorf("violations %v", got)
		}
		_, err = h.billing().ListInvoices(h.op(), &adminv1.ListInvoicesRequest{Status: 42, PageSize: -1, PageToken: "junk"})
		if got := violations(t, err); !slices.Equal(got, []string{"page_size", "status", "page_token"}) {
			t.Errorf("violations %v", got)
		}
		_, err = h.billing().GetInvoice(h.op(), &adminv1.GetInvoiceRequest{Id: uuid.NewString()})
		wantCode(t, err, codes.NotFound)
	})
}

func TestTenantCurrency(t *testing.T) {
	h := newHarness(t, storetest.SQLite(t))
	if got := h.createTenant("acme").GetCurrency(); got != "USD" {
		t.Errorf("default currency %q, want USD", got)
	}
	resp, err := h.tenants().CreateTenant(h.op(), &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "euro", Currency: "EUR"}})
	if err != nil || resp.GetTenant().GetCurrency() != "EUR" {
		t.Fatalf("create in EUR: %v %v", resp, err)
	}
	_, err = h.tenants().CreateTenant(h.op(), &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "bad", Currency: "euro"}})
	if got := violations(t, err); !slices.Equal(got, []string{"tenant.currency"}) {
		t.Errorf("violations %v", got)
	}
	mask := &fieldmaskpb.FieldMask{Paths: []string{"currency"}}
	_, err = h.tenants().UpdateTenant(h.ctx(h.tenantAdmin("acme")), &adminv1.UpdateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme", Currency: "GBP"}, UpdateMask: mask})
	wantCode(t, err, codes.PermissionDenied)
	up, err := h.tenants().UpdateTenant(h.op(), &adminv1.UpdateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme", Currency: "GBP"}, UpdateMask: mask})
	if err != nil || up.GetTenant().GetCurrency() != "GBP" {
		t.Errorf("operator sets GBP: %v %v", up, err)
	}
}
