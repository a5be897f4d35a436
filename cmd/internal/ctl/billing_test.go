package ctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

const invoiceID = "3f0c9a52-1b7e-4d55-9a0e-6c1d2b3a4f5e"

var testInvoice = &adminv1.Invoice{
	Id: invoiceID, TenantId: tenantUUID, Number: "TG-202511-acme", PeriodStartTime: created, PeriodEndTime: updated,
	Status: adminv1.InvoiceStatus_INVOICE_STATUS_ISSUED, Currency: "EUR", ExchangeRateMicros: 920_000,
	TotalMicros: 4_250_153, TotalCurrencyMicros: 3_910_141, Requests: 1609, BillingName: "Acme Corp", BillingEmail: "ap@acme.example",
	CreateTime: updated, IssueTime: updated,
	Lines: []*adminv1.InvoiceLine{
		{Model: "gpt-4o", Kind: adminv1.InvoiceLineKind_INVOICE_LINE_KIND_INPUT, PriceEffectiveTime: created, UnitPriceMicrosPerMtok: 2_500_000,
			Quantity: 1_000_000, AmountMicros: 2_500_000, AmountCurrencyMicros: 2_300_000},
		{Model: "gpt-4o", Kind: adminv1.InvoiceLineKind_INVOICE_LINE_KIND_OUTPUT, PriceEffectiveTime: created, UnitPriceMicrosPerMtok: 10_000_000,
			Quantity: 175_000, AmountMicros: 1_750_000, AmountCurrencyMicros: 1_610_000},
		{Model: "gpt-4o", Kind: adminv1.InvoiceLineKind_INVOICE_LINE_KIND_ADJUSTMENT, AmountMicros: 3, AmountCurrencyMicros: 3},
		// A request of October that arrived after October's invoice.
		{Model: "gpt-4o", Kind: adminv1.InvoiceLineKind_INVOICE_LINE_KIND_INPUT, PriceEffectiveTime: ts(time.Date(2025, 9, 1, 0, 0, 0, 0, time.UTC)), UnitPriceMicrosPerMtok: 2_500_000,
			Quantity: 60, AmountMicros: 150, AmountCurrencyMicros: 138, ServicePeriodStartTime: ts(time.Date(2025, 10, 1, 0, 0, 0, 0, time.UTC))},
	},
}

func TestBillingRequests(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		method string
		want   proto.Message
	}{
		{"list by tenant and status", []string{"billing", "list", "--tenant", "acme", "--status", "draft"}, "ListInvoices",
			&adminv1.ListInvoicesRequest{Tenant: "acme", Status: adminv1.InvoiceStatus_INVOICE_STATUS_DRAFT, PageSize: 100}},
		{"get", []string{"billing", "get", invoiceID}, "GetInvoice", &adminv1.GetInvoiceRequest{Id: invoiceID}},
		{"issue", []string{"billing", "issue", invoiceID}, "TransitionInvoice",
			&adminv1.TransitionInvoiceRequest{Id: invoiceID, Status: adminv1.InvoiceStatus_INVOICE_STATUS_ISSUED}},
		{"pay", []string{"billing", "pay", invoiceID}, "TransitionInvoice",
			&adminv1.TransitionInvoiceRequest{Id: invoiceID, Status: adminv1.InvoiceStatus_INVOICE_STATUS_PAID}},
		{"void", []string{"billing", "void", invoiceID}, "TransitionInvoice",
			&adminv1.TransitionInvoiceRequest{Id: invoiceID, Status: adminv1.InvoiceStatus_INVOICE_STATUS_VOID}},
		{"export as CSV by default", []string{"billing", "export", invoiceID}, "ExportInvoice",
			&adminv1.ExportInvoiceRequest{Id: invoiceID, Format: adminv1.InvoiceFormat_INVOICE_FORMAT_CSV}},
		{"verify", []string{"billing", "verify", invoiceID}, "VerifyInvoice", &adminv1.VerifyInvoiceRequest{Id: invoiceID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			r := f.run(t, tt.args...)
			if r.code != exitOK {
				t.Fatalf("tollgatectl %v: %v", tt.args, r)
			}
			got := f.only(t, tt.method).req
			if lr, ok := got.(*adminv1.ListInvoicesRequest); ok {
				lr.PageSize = 100 // collect's page size is its own business
			}
			assertProto(t, got, tt.want)
		})
	}
}

func TestBillingExportWritesTheContentAsIs(t *testing.T) {
	content := "invoice,period_start\nTG-202511-acme,2025-11-03\n"
	f := newFakeServer(t)
	f.replyWith("ExportInvoice", &adminv1.ExportInvoiceResponse{Content: []byte(content), ContentType: "text/csv", Filename: "TG-202511-acme.csv"})
	if r := f.run(t, "billing", "export", invoiceID); r.code != exitOK || r.stdout != content {
		t.Errorf("stdout %q (%v), want the content", r.stdout, r)
	}
	out := filepath.Join(t.TempDir(), "inv.csv")
	if r := f.run(t, "billing", "export", invoiceID, "--out", out); r.code != exitOK || r.stdout != "" {
		t.Fatalf("--out: %v", r)
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != content {
		t.Errorf("file holds %q (%v)", b, err)
	}
}

func TestBillingCommandLineErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown status", []string{"billing", "list", "--status", "late"}, `--status: unknown value "late"`},
		{"unknown format", []string{"billing", "export", invoiceID, "--format", "pdf"}, `--format: unknown value "pdf"`},
		{"missing id", []string{"billing", "pay"}, "missing ID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			r := f.run(t, tt.args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("got %v, want exit %d saying %q", r, exitUsage, tt.want)
			}
			if len(f.recorded()) != 0 {
				t.Errorf("sent %v for a bad command line", methods(f.recorded()))
			}
		})
	}
}

func TestBillingGolden(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		m    proto.Message
		meth string
	}{
		{"billing-get.table", []string{"billing", "get", invoiceID}, &adminv1.GetInvoiceResponse{Invoice: testInvoice}, "GetInvoice"},
		{"billing-list.table", []string{"billing", "list"}, &adminv1.ListInvoicesResponse{Invoices: []*adminv1.Invoice{testInvoice}}, "ListInvoices"},
		{"billing-verify.table", []string{"billing", "verify", invoiceID}, &adminv1.VerifyInvoiceResponse{
			Matches: false, Differences: []string{"total: invoice 4250003, records 4250153 micro-dollars"},
			RecomputedTotalMicros: 4_250_153, RecomputedRequests: 1609, PendingLateRequests: 2}, "VerifyInvoice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			f.replyWith(tt.meth, tt.m)
			r := f.run(t, tt.args...)
			if r.code != exitOK {
				t.Fatalf("tollgatectl %v: %v", tt.args, r)
			}
			checkGolden(t, tt.name, r.stdout)
		})
	}
}
