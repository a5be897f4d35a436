package usageingest

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/invoice"
	"github.com/tollgate-dev/tollgate/ent/predicate"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
)

// monthOf is the first instant (UTC) of the calendar month that holds t,
// the month an invoice bills (controlplane/billing.Month).
func monthOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// tenantMonth is one invoice's key.
type tenantMonth struct {
	tenant uuid.UUID
	month  time.Time
}

// lookupChunk bounds the (tenant, month) pairs of one invoice lookup.
const lookupChunk = 200

// markLate marks late the fresh rows whose month's invoice for their tenant
// exists already: that invoice was made without them, so the tenant's next
// invoice bills them (controlplane/billing). Only rows of months before
// thisMonth can have an invoice; a batch of the current month's records,
// which is all of normal traffic, costs no statement here.
//
// The lookup runs in the ingest transaction. The invoice transaction reads
// the month's records and inserts the invoice; this one inserts records and
// reads the invoice: under SERIALIZABLE (or SQLite's single writer) two such
// transactions that overlap form a cycle and one of them is retried, so a
// record is either on its month's invoice or marked late here, never both
// and never neither (docs/billing.md).
func markLate(ctx context.Context, tx *ent.Tx, fresh []row, thisMonth time.Time) error {
	byKey := map[tenantMonth][]string{}
	for _, rw := range fresh {
		if rw.time.Before(thisMonth) {
			k := tenantMonth{rw.tenantID, monthOf(rw.time)}
			byKey[k] = append(byKey[k], rw.requestID)
		}
	}
	if len(byKey) == 0 {
		return nil
	}
	keys := make([]tenantMonth, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	var late []string
	for start := 0; start < len(keys); start += lookupChunk {
		chunk := keys[start:min(start+lookupChunk, len(keys))]
		preds := make([]predicate.Invoice, len(chunk))
		for i, k := range chunk {
			preds[i] = invoice.And(invoice.TenantID(k.tenant), invoice.PeriodStart(k.month))
		}
		invs, err := tx.Invoice.Query().Where(invoice.Or(preds...)).
			Select(invoice.FieldTenantID, invoice.FieldPeriodStart).All(ctx)
		if err != nil {
			return fmt.Errorf("looking up the invoices of past months' records: %w", err)
		}
		for _, inv := range invs {
			late = append(late, byKey[tenantMonth{inv.TenantID, inv.PeriodStart.UTC()}]...)
		}
	}
	if len(late) == 0 {
		return nil
	}
	slices.Sort(late) // a fixed order of row locks
	for start := 0; start < len(late); start += insertChunk {
		ids := late[start:min(start+insertChunk, len(late))]
		n, err := tx.UsageRecord.Update().Where(usagerecord.RequestIDIn(ids...)).SetLate(true).Save(ctx)
		if err != nil {
			return fmt.Errorf("marking late usage records: %w", err)
		}
		if n != len(ids) {
			return fmt.Errorf("marking late usage records: marked %d of %d", n, len(ids))
		}
	}
	return nil
}
