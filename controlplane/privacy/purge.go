// Package privacy implements the data side of Tollgate's privacy promises
// (docs/privacy.md): the purge of expired content and usage, and the data
// subject's rights — export, correction, erasure and restriction — over
// everything the store holds about a tenant or an account.
package privacy

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	entsql "entgo.io/ent/dialect/sql"

	"github.com/tollgate-dev/tollgate/controlplane/contentlog"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/apikey"
	entcontentlog "github.com/tollgate-dev/tollgate/ent/contentlog"
	"github.com/tollgate-dev/tollgate/ent/datakey"
	"github.com/tollgate-dev/tollgate/ent/gatewaypolicy"
	"github.com/tollgate-dev/tollgate/ent/invoice"
	"github.com/tollgate-dev/tollgate/ent/invoiceline"
	"github.com/tollgate-dev/tollgate/ent/predicate"
	"github.com/tollgate-dev/tollgate/ent/tenant"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
)

// PurgeJob is the background job's name (controlplane/jobs).
const PurgeJob = "privacy.purge"

// PurgeEvery is how often the purge runs.
const PurgeEvery = 10 * time.Minute

// DefaultPurgeBatch is the most rows one purge transaction deletes: small
// enough that a transaction stays short on CockroachDB (and conflicts
// little with ingestion), large enough to keep up with any ingest rate.
const DefaultPurgeBatch = 1000

// Purger deletes what retention no longer allows the store to keep:
// content past its expiry, content whose data key was destroyed (an erased
// tenant), and usage records older than their tenant's or key's
// usage_retention_days. It never touches rollups or invoices, which are
// computed from usage and kept for billing (docs/privacy.md).
type Purger struct {
	store *store.Store
	vault *contentlog.Vault // rewraps data keys after a master key rotation; may be nil
	log   *slog.Logger
	// Batch is the most rows per transaction; Now the clock. Tests set them.
	Batch int
	Now   func() time.Time
	// InvoiceRetention is the legal period for which invoices of erased
	// tenants are kept (blanked) after their period ends.
	InvoiceRetention time.Duration
}

// DefaultInvoiceRetention is ten years, the longest period common
// bookkeeping law asks invoices to be kept for.
const DefaultInvoiceRetention = 10 * 365 * 24 * time.Hour

// NewPurger returns a Purger.
func NewPurger(st *store.Store, vault *contentlog.Vault, log *slog.Logger) *Purger {
	if log == nil {
		log = slog.Default()
	}
	return &Purger{store: st, vault: vault, log: log, Batch: DefaultPurgeBatch, Now: time.Now, InvoiceRetention: DefaultInvoiceRetention}
}

// PurgeStats counts what one run deleted.
type PurgeStats struct {
	ExpiredContent  int
	ShreddedContent int // content whose data key is gone
	Usage           int
	RewrappedKeys   int
	Invoices        int // of erased tenants, past the legal period
	Batches         int
}

// Run purges until nothing is left to purge or ctx ends; each batch commits
// on its own, so a run cut short keeps what it did and the next one goes on.
func (p *Purger) Run(ctx context.Context) error {
	_, err := p.Purge(ctx)
	return err
}

// Purge is Run, returning what it deleted.
func (p *Purger) Purge(ctx context.Context) (PurgeStats, error) {
	var st PurgeStats
	now := p.Now().UTC()
	expired := entcontentlog.ExpiresAtLTE(now)
	// Content whose data key no longer exists can never be read again; the
	// content of a deleted key (an erased account's) goes with the key.
	shredded := predicate.ContentLog(func(s *entsql.Selector) {
		s.Where(entsql.Or(
			entsql.NotIn(s.C(entcontentlog.FieldDataKeyID), entsql.Select(datakey.FieldID).From(entsql.Table(datakey.Table))),
			entsql.And(entsql.NotNull(s.C(entcontentlog.FieldAPIKeyID)),
				entsql.NotIn(s.C(entcontentlog.FieldAPIKeyID), entsql.Select(apikey.FieldID).From(entsql.Table(apikey.Table)))),
		))
	})
	for _, step := range []struct {
		count *int
		pred  predicate.ContentLog
	}{{&st.ExpiredContent, expired}, {&st.ShreddedContent, shredded}} {
		n, batches, err := p.drain(ctx, func(ctx context.Context, tx *ent.Tx) (int, error) {
			return deleteContent(ctx, tx, step.pred, p.Batch)
		})
		*step.count += n
		st.Batches += batches
		if err != nil {
			return st, err
		}
	}
	cutoffs, err := p.usageCutoffs(ctx, now)
	if err != nil {
		return st, err
	}
	for _, c := range cutoffs {
		n, batches, err := p.drain(ctx, func(ctx context.Context, tx *ent.Tx) (int, error) {
			return deleteUsage(ctx, tx, c.pred, p.Batch)
		})
		st.Usage += n
		st.Batches += batches
		if err != nil {
			return st, err
		}
	}
	n, batches, err := p.drain(ctx, func(ctx context.Context, tx *ent.Tx) (int, error) {
		return deleteInvoices(ctx, tx, now.Add(-p.InvoiceRetention), p.Batch)
	})
	st.Invoices, st.Batches = n, st.Batches+batches
	if err != nil {
		return st, err
	}
	if p.vault != nil {
		n, batches, err := p.drain(ctx, func(ctx context.Context, tx *ent.Tx) (int, error) {
			return p.vault.Rewrap(ctx, tx, p.Batch)
		})
		st.RewrappedKeys, st.Batches = n, st.Batches+batches
		if err != nil {
			return st, err
		}
	}
	if st.ExpiredContent+st.ShreddedContent+st.Usage+st.RewrappedKeys > 0 {
		p.log.InfoContext(ctx, "privacy purge", "expired_content", st.ExpiredContent, "shredded_content", st.ShreddedContent,
			"usage_records", st.Usage, "rewrapped_data_keys", st.RewrappedKeys, "batches", st.Batches)
	}
	return st, nil
}

// drain runs one bounded batch per transaction until a batch comes back
// short of a full one.
func (p *Purger) drain(ctx context.Context, batch func(context.Context, *ent.Tx) (int, error)) (total, batches int, err error) {
	for {
		if err := ctx.Err(); err != nil {
			return total, batches, err
		}
		var n int
		err := p.store.InTx(ctx, func(tx *ent.Tx) (err error) {
			n, err = batch(ctx, tx)
			return err
		})
		if err != nil {
			return total, batches, err
		}
		if n == 0 {
			return total, batches, nil
		}
		total += n
		batches++
		if n < p.Batch {
			return total, batches, nil
		}
	}
}

func deleteContent(ctx context.Context, tx *ent.Tx, pred predicate.ContentLog, limit int) (int, error) {
	ids, err := tx.ContentLog.Query().Where(pred).Limit(limit).IDs(ctx)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	n, err := tx.ContentLog.Delete().Where(entcontentlog.IDIn(ids...)).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("deleting content: %w", err)
	}
	return n, nil
}

// deleteInvoices deletes invoices (and their lines) of tenants that no
// longer exist whose period ended before before.
func deleteInvoices(ctx context.Context, tx *ent.Tx, before time.Time, limit int) (int, error) {
	ids, err := tx.Invoice.Query().Where(invoice.PeriodEndLT(before), func(s *entsql.Selector) {
		s.Where(entsql.NotIn(s.C(invoice.FieldTenantID), entsql.Select(tenant.FieldID).From(entsql.Table(tenant.Table))))
	}).Limit(limit).IDs(ctx)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	if _, err := tx.InvoiceLine.Delete().Where(invoiceline.InvoiceIDIn(ids...)).Exec(ctx); err != nil {
		return 0, fmt.Errorf("deleting invoice lines: %w", err)
	}
	n, err := tx.Invoice.Delete().Where(invoice.IDIn(ids...)).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("deleting invoices: %w", err)
	}
	return n, nil
}

func deleteUsage(ctx context.Context, tx *ent.Tx, pred predicate.UsageRecord, limit int) (int, error) {
	ids, err := tx.UsageRecord.Query().Where(pred).Limit(limit).IDs(ctx)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	n, err := tx.UsageRecord.Delete().Where(usagerecord.IDIn(ids...)).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("deleting usage records: %w", err)
	}
	return n, nil
}

type usageCutoff struct{ pred predicate.UsageRecord }

// usageCutoffs lists, per tenant and per key whose policy sets
// usage_retention_days, which records are past it. A key's records go when
// either its own period or its tenant's has passed: the tenant's cutoff
// covers all of the tenant's records, and the key's adds its own.
func (p *Purger) usageCutoffs(ctx context.Context, now time.Time) ([]usageCutoff, error) {
	pols, err := p.store.Client().GatewayPolicy.Query().Where(gatewaypolicy.Or(
		gatewaypolicy.TenantIDNotNil(), gatewaypolicy.APIKeyIDNotNil())).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading retention policies: %w", err)
	}
	var out []usageCutoff
	for _, pol := range pols {
		days := pol.Spec.Retention.UsageDays
		if days <= 0 {
			continue
		}
		before := now.Add(-time.Duration(days) * 24 * time.Hour)
		switch {
		case pol.TenantID != nil:
			out = append(out, usageCutoff{usagerecord.And(usagerecord.TenantID(*pol.TenantID), usagerecord.CreatedAtLT(before))})
		case pol.APIKeyID != nil:
			out = append(out, usageCutoff{usagerecord.And(usagerecord.APIKeyID(*pol.APIKeyID), usagerecord.CreatedAtLT(before))})
		}
	}
	return out, nil
}
