package notify

import (
	"context"
	"time"

	"github.com/tollgate-dev/tollgate/ent"
)

// InvoiceIssued enqueues the invoice.issued event of inv in tx, the
// transaction that issues it: give it to billing.Config.OnIssued. The data
// names the invoice and its totals, not its billing contact.
func InvoiceIssued(ctx context.Context, tx *ent.Tx, inv *ent.Invoice) error {
	data := map[string]any{
		"invoice_id":            inv.ID.String(),
		"number":                inv.Number,
		"period_start":          inv.PeriodStart.UTC().Format(time.RFC3339),
		"period_end":            inv.PeriodEnd.UTC().Format(time.RFC3339),
		"currency":              inv.Currency,
		"total_currency_micros": inv.TotalCurrencyMicros,
		"total_micros":          inv.TotalMicros,
		"requests":              inv.Requests,
	}
	if inv.IssuedAt != nil {
		data["issued_at"] = inv.IssuedAt.UTC().Format(time.RFC3339)
	}
	return Enqueue(ctx, tx, Event{Type: TypeInvoiceIssued, TenantID: inv.TenantID, Data: data,
		// An invoice is issued once; the key keeps a retried or repeated
		// issue from notifying twice.
		DedupeKey: "invoice.issued:" + inv.ID.String()})
}
