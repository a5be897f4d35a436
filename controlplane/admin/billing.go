package admin

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/billing"
	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/invoice"
	"github.com/tollgate-dev/tollgate/ent/invoiceline"
)

// billingService serves BillingService: invoices are made by the monthly
// job (controlplane/billing); here they are read, exported, verified and
// moved through their statuses.
type billingService struct {
	adminv1.UnimplementedBillingServiceServer
	*Server
}

var invoiceStatusToProto = map[invoice.Status]adminv1.InvoiceStatus{
	invoice.StatusDraft:  adminv1.InvoiceStatus_INVOICE_STATUS_DRAFT,
	invoice.StatusIssued: adminv1.InvoiceStatus_INVOICE_STATUS_ISSUED,
	invoice.StatusPaid:   adminv1.InvoiceStatus_INVOICE_STATUS_PAID,
	invoice.StatusVoid:   adminv1.InvoiceStatus_INVOICE_STATUS_VOID,
}

var invoiceLineKindToProto = map[invoiceline.Kind]adminv1.InvoiceLineKind{
	invoiceline.KindInput:       adminv1.InvoiceLineKind_INVOICE_LINE_KIND_INPUT,
	invoiceline.KindCachedInput: adminv1.InvoiceLineKind_INVOICE_LINE_KIND_CACHED_INPUT,
	invoiceline.KindOutput:      adminv1.InvoiceLineKind_INVOICE_LINE_KIND_OUTPUT,
	invoiceline.KindAdjustment:  adminv1.InvoiceLineKind_INVOICE_LINE_KIND_ADJUSTMENT,
}

func invoiceStatusFromProto(field string, st adminv1.InvoiceStatus) (invoice.Status, error) {
	for k, v := range invoiceStatusToProto {
		if v == st {
			return k, nil
		}
	}
	return "", invalid.Field(field, "must be INVOICE_STATUS_DRAFT, INVOICE_STATUS_ISSUED, INVOICE_STATUS_PAID or INVOICE_STATUS_VOID")
}

func invoiceToProto(inv *ent.Invoice, lines []*ent.InvoiceLine) *adminv1.Invoice {
	out := &adminv1.Invoice{
		Id:                  inv.ID.String(),
		TenantId:            inv.TenantID.String(),
		Number:              inv.Number,
		PeriodStartTime:     ts(inv.PeriodStart),
		PeriodEndTime:       ts(inv.PeriodEnd),
		Status:              invoiceStatusToProto[inv.Status],
		Currency:            inv.Currency,
		ExchangeRateMicros:  inv.ExchangeRateMicros,
		TotalMicros:         inv.TotalMicros,
		TotalCurrencyMicros: inv.TotalCurrencyMicros,
		Requests:            inv.Requests,
		BillingName:         inv.BillingName,
		BillingEmail:        inv.BillingEmail,
		BillingReference:    inv.BillingReference,
		CreateTime:          ts(inv.CreatedAt),
		IssueTime:           tsp(inv.IssuedAt),
		PayTime:             tsp(inv.PaidAt),
		VoidTime:            tsp(inv.VoidedAt),
	}
	for _, l := range lines {
		out.Lines = append(out.Lines, &adminv1.InvoiceLine{
			Model:                  l.Model,
			Kind:                   invoiceLineKindToProto[l.Kind],
			PriceEffectiveTime:     tsp(l.PriceEffectiveFrom),
			UnitPriceMicrosPerMtok: l.UnitPriceMicrosPerMtok,
			Quantity:               l.Quantity,
			AmountMicros:           l.AmountMicros,
			AmountCurrencyMicros:   l.AmountCurrencyMicros,
			ServicePeriodStartTime: tsp(l.ServicePeriodStart),
		})
	}
	return out
}

// visibleInvoice reads an invoice p may see, with its lines. Another
// tenant's invoice is NotFound, as one that does not exist.
func visibleInvoice(ctx context.Context, c *ent.Client, p Principal, ref string) (*ent.Invoice, []*ent.InvoiceLine, error) {
	id, err := parseID("id", ref)
	if err != nil {
		return nil, nil, err
	}
	inv, err := c.Invoice.Get(ctx, id)
	if ent.IsNotFound(err) || (err == nil && !p.canSeeTenant(inv.TenantID)) {
		return nil, nil, notFound("invoice", ref)
	}
	if err != nil {
		return nil, nil, err
	}
	lines, err := inv.QueryLines().Order(ent.Asc(invoiceline.FieldPosition)).All(ctx)
	if err != nil {
		return nil, nil, err
	}
	return inv, lines, nil
}

func (s *billingService) ListInvoices(ctx context.Context, req *adminv1.ListInvoicesRequest) (*adminv1.ListInvoicesResponse, error) {
	p := principalFrom(ctx)
	size, err := pageSize(req.GetPageSize())
	errs := []error{err}
	var (
		st      invoice.Status
		after   time.Time
		afterID uuid.UUID
	)
	if req.GetStatus() != adminv1.InvoiceStatus_INVOICE_STATUS_UNSPECIFIED {
		st, err = invoiceStatusFromProto("status", req.GetStatus())
		errs = append(errs, err)
	}
	if req.GetPageToken() != "" {
		after, afterID, err = decodeTimeIDToken(req.GetPageToken())
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}
	c := s.store.Client()
	q := c.Invoice.Query()
	switch {
	case req.GetTenant() != "":
		t, err := resolveTenant(ctx, c.Tenant, p, "tenant", req.GetTenant())
		if err != nil {
			return nil, s.toStatus(ctx, "list invoices", err)
		}
		q.Where(invoice.TenantID(t.ID))
	case !p.Operator:
		q.Where(invoice.TenantID(p.TenantID))
	}
	if st != "" {
		q.Where(invoice.StatusEQ(st))
	}
	if req.GetPageToken() != "" {
		q.Where(invoice.Or(
			invoice.PeriodStartLT(after),
			invoice.And(invoice.PeriodStart(after), invoice.IDLT(afterID)),
		))
	}
	rows, err := q.Order(ent.Desc(invoice.FieldPeriodStart), ent.Desc(invoice.FieldID)).Limit(size + 1).All(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, "list invoices", err)
	}
	resp := &adminv1.ListInvoicesResponse{}
	resp.Invoices, resp.NextPageToken = page(rows, size,
		func(inv *ent.Invoice) *adminv1.Invoice { return invoiceToProto(inv, nil) },
		func(inv *ent.Invoice) string { return encodeTimeIDToken(inv.PeriodStart, inv.ID) })
	return resp, nil
}

func (s *billingService) GetInvoice(ctx context.Context, req *adminv1.GetInvoiceRequest) (*adminv1.GetInvoiceResponse, error) {
	inv, lines, err := visibleInvoice(ctx, s.store.Client(), principalFrom(ctx), req.GetId())
	if err != nil {
		return nil, s.toStatus(ctx, "get invoice", err)
	}
	return &adminv1.GetInvoiceResponse{Invoice: invoiceToProto(inv, lines)}, nil
}

func (s *billingService) TransitionInvoice(ctx context.Context, req *adminv1.TransitionInvoiceRequest) (*adminv1.TransitionInvoiceResponse, error) {
	p := principalFrom(ctx)
	_, err := parseID("id", req.GetId())
	errs := []error{err}
	to, err := invoiceStatusFromProto("status", req.GetStatus())
	errs = append(errs, err)
	if to == invoice.StatusDraft {
		errs = append(errs, invalid.Field("status", "an invoice never goes back to draft"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}
	var out *adminv1.Invoice
	err = s.store.InTx(ctx, func(tx *ent.Tx) error {
		inv, lines, err := visibleInvoice(ctx, tx.Client(), p, req.GetId())
		if err != nil {
			return err
		}
		// Tenant admins may read their invoices; what they owe is the
		// operator's to change.
		if err := requireOperator(p, "change an invoice's status"); err != nil {
			return err
		}
		updated, err := s.billing.Transition(ctx, tx, inv, to, p.Actor())
		if errors.Is(err, billing.ErrTransition) {
			return status.Error(codes.FailedPrecondition, err.Error())
		}
		if err != nil {
			return err
		}
		out = invoiceToProto(updated, lines)
		return nil
	})
	if err != nil {
		return nil, s.toStatus(ctx, "change invoice status", err)
	}
	return &adminv1.TransitionInvoiceResponse{Invoice: out}, nil
}

func (s *billingService) ExportInvoice(ctx context.Context, req *adminv1.ExportInvoiceRequest) (*adminv1.ExportInvoiceResponse, error) {
	_, err := parseID("id", req.GetId())
	errs := []error{err}
	switch req.GetFormat() {
	case adminv1.InvoiceFormat_INVOICE_FORMAT_JSON, adminv1.InvoiceFormat_INVOICE_FORMAT_CSV:
	default:
		errs = append(errs, invalid.Field("format", "is required: INVOICE_FORMAT_JSON or INVOICE_FORMAT_CSV"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}
	inv, lines, err := visibleInvoice(ctx, s.store.Client(), principalFrom(ctx), req.GetId())
	if err != nil {
		return nil, s.toStatus(ctx, "export invoice", err)
	}
	if req.GetFormat() == adminv1.InvoiceFormat_INVOICE_FORMAT_CSV {
		content, err := billing.CSV(inv, lines)
		if err != nil {
			return nil, s.toStatus(ctx, "export invoice", err)
		}
		return &adminv1.ExportInvoiceResponse{Content: content, ContentType: "text/csv", Filename: inv.Number + ".csv"}, nil
	}
	content, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(invoiceToProto(inv, lines))
	if err != nil {
		return nil, s.toStatus(ctx, "export invoice", err)
	}
	return &adminv1.ExportInvoiceResponse{Content: append(content, '\n'), ContentType: "application/json", Filename: inv.Number + ".json"}, nil
}

func (s *billingService) VerifyInvoice(ctx context.Context, req *adminv1.VerifyInvoiceRequest) (*adminv1.VerifyInvoiceResponse, error) {
	if _, err := parseID("id", req.GetId()); err != nil {
		return nil, badRequest(err)
	}
	inv, lines, err := visibleInvoice(ctx, s.store.Client(), principalFrom(ctx), req.GetId())
	if err != nil {
		return nil, s.toStatus(ctx, "verify invoice", err)
	}
	inv.Edges.Lines = lines
	v, err := s.billing.Verify(ctx, inv)
	if err != nil {
		return nil, s.toStatus(ctx, "verify invoice", err)
	}
	return &adminv1.VerifyInvoiceResponse{
		Matches: len(v.Differences) == 0, Differences: v.Differences,
		RecomputedTotalMicros: v.Recomputed.Total, RecomputedRequests: v.Recomputed.Requests,
		PendingLateRequests: v.PendingLate,
	}, nil
}
