package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
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
	s.renderInvoice(w, r, c, t, inv, http.StatusOK, flashFor(r))
}

type invoiceData struct {
	*adminv1.Invoice
	// Moves are the status changes the operator may make from here.
	Moves []invoiceMove
}

// PriorPeriod reports whether the invoice bills usage of earlier months
// (records that arrived after their own month's invoice was made).
func (d invoiceData) PriorPeriod() bool {
	for _, l := range d.GetLines() {
		if l.GetServicePeriodStartTime() != nil {
			return true
		}
	}
	return false
}

// invoiceMove is one status change offered on the invoice page.
type invoiceMove struct {
	Status, Label, Confirm string
	Danger                 bool
}

// invoiceMoves are the changes from an invoice's status, as BillingService
// allows them: draft → issued or void, issued → paid or void.
func invoiceMoves(inv *adminv1.Invoice) []invoiceMove {
	issue := invoiceMove{Status: "issued", Label: "Issue", Confirm: "Issue invoice " + inv.GetNumber() + "? Its amounts will never change again."}
	pay := invoiceMove{Status: "paid", Label: "Mark paid", Confirm: "Mark invoice " + inv.GetNumber() + " as paid?"}
	void := invoiceMove{Status: "void", Label: "Void", Confirm: "Void invoice " + inv.GetNumber() + "? A void invoice stays void.", Danger: true}
	switch inv.GetStatus() {
	case adminv1.InvoiceStatus_INVOICE_STATUS_DRAFT:
		return []invoiceMove{issue, void}
	case adminv1.InvoiceStatus_INVOICE_STATUS_ISSUED:
		return []invoiceMove{pay, void}
	}
	return nil
}

func (s *Server) renderInvoice(w http.ResponseWriter, r *http.Request, c *call, t *adminv1.Tenant, inv *adminv1.Invoice, code int, msg string) {
	d := invoiceData{Invoice: inv}
	// Only the operator changes an invoice's status; the API refuses
	// everyone else, so nobody else is offered it.
	if c.id.Operator {
		d.Moves = invoiceMoves(inv)
	}
	v := c.view("Invoice "+inv.GetNumber(), "invoices")
	v.Tenant, v.Data = t, d
	if code >= 400 {
		v.Error = msg
	} else {
		v.Flash = msg
	}
	s.render(w, r, code, "invoice", v)
}

// invoiceStatuses are the statuses a form may ask for, and the flash that
// confirms each.
var invoiceStatuses = map[string]struct {
	status adminv1.InvoiceStatus
	done   string
}{
	"issued": {adminv1.InvoiceStatus_INVOICE_STATUS_ISSUED, "issued"},
	"paid":   {adminv1.InvoiceStatus_INVOICE_STATUS_PAID, "paid"},
	"void":   {adminv1.InvoiceStatus_INVOICE_STATUS_VOID, "voided"},
}

// transitionInvoice changes an invoice's status (BillingService.
// TransitionInvoice, the operator's). A change the invoice's status does
// not allow (paying a draft, issuing a void invoice, or one another
// operator made first) is shown on the invoice page, which then shows the
// status as it is now.
func (s *Server) transitionInvoice(w http.ResponseWriter, r *http.Request, c *call) {
	t, inv, ok := s.loadInvoice(w, r, c, r.PathValue("id"))
	if !ok {
		return
	}
	to, ok := invoiceStatuses[r.PostFormValue("status")]
	if !ok {
		s.renderInvoice(w, r, c, t, inv, http.StatusBadRequest, "Choose a status: issued, paid or void. Nothing was changed.")
		return
	}
	_, err := s.billing.TransitionInvoice(c.ctx(r), &adminv1.TransitionInvoiceRequest{Id: inv.GetId(), Status: to.status})
	if err != nil {
		if formError(err) {
			s.renderInvoice(w, r, c, t, inv, http.StatusBadRequest, errorText(err)+" Nothing was changed.")
			return
		}
		s.fail(w, r, c, err)
		return
	}
	http.Redirect(w, r, tenantPath(t, "/invoices/"+url.PathEscape(inv.GetId())+"?done="+to.done), http.StatusSeeOther)
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
