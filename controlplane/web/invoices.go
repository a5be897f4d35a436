package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

type invoicesData struct {
	Invoices []*adminv1.Invoice
	Next     string
}

func (s *Server) invoicesPage(w http.ResponseWriter, r *http.Request, c *call) {
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return
	}
	resp, err := s.billing.ListInvoices(c.ctx(r), &adminv1.ListInvoicesRequest{Tenant: t.GetId(), PageSize: 24, PageToken: r.URL.Query().Get("page")})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	v := c.view("Invoices", "invoices")
	v.Tenant, v.Data = t, invoicesData{Invoices: resp.GetInvoices(), Next: resp.GetNextPageToken()}
	s.render(w, r, http.StatusOK, "invoices", v)
}

// loadInvoice loads the invoice id (see inTenant).
func (s *Server) loadInvoice(w http.ResponseWriter, r *http.Request, c *call, id string) (*adminv1.Tenant, *adminv1.Invoice, bool) {
	return inTenant(s, w, r, c, func(ctx context.Context) (*adminv1.Invoice, error) {
		resp, err := s.billing.GetInvoice(ctx, &adminv1.GetInvoiceRequest{Id: id})
		return resp.GetInvoice(), err
	})
}

// invoiceOrFile serves /invoices/<id> (the page) and /invoices/<id>.csv or
// .json (the download): one route, as ServeMux wildcards span whole
// segments.
func (s *Server) invoiceOrFile(w http.ResponseWriter, r *http.Request, c *call) {
	if strings.Contains(r.PathValue("file"), ".") {
		s.invoiceFile(w, r, c)
		return
	}
	s.invoicePage(w, r, c)
}

func (s *Server) invoicePage(w http.ResponseWriter, r *http.Request, c *call) {
	t, inv, ok := s.loadInvoice(w, r, c, r.PathValue("file"))
	if !ok {
		return
	}
	v := c.view("Invoice "+inv.GetNumber(), "invoices")
	v.Tenant, v.Data = t, inv
	s.render(w, r, http.StatusOK, "invoice", v)
}

// invoiceFile downloads an invoice as CSV or JSON (BillingService.ExportInvoice).
func (s *Server) invoiceFile(w http.ResponseWriter, r *http.Request, c *call) {
	id, ext, _ := strings.Cut(r.PathValue("file"), ".")
	format := map[string]adminv1.InvoiceFormat{"csv": adminv1.InvoiceFormat_INVOICE_FORMAT_CSV, "json": adminv1.InvoiceFormat_INVOICE_FORMAT_JSON}[ext]
	if format == adminv1.InvoiceFormat_INVOICE_FORMAT_UNSPECIFIED {
		s.notFound(w, r)
		return
	}
	_, inv, ok := s.loadInvoice(w, r, c, id)
	if !ok {
		return
	}
	resp, err := s.billing.ExportInvoice(c.ctx(r), &adminv1.ExportInvoiceRequest{Id: inv.GetId(), Format: format})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	w.Header().Set("Content-Type", resp.GetContentType())
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename=%q`, resp.GetFilename()))
	_, _ = w.Write(resp.GetContent()) // a broken connection is the browser's to report
}
