// Package billing turns usage records into monthly invoices.
//
// The "billing.invoices" background job (IssueDue, run under a lease by
// controlplane/jobs) creates, once per tenant and calendar month (UTC), an
// invoice computed from the month's usage records at the prices in force
// when each request arrived (Compute), converts it into the tenant's
// currency at the operator's exchange rate, and issues it. One invoice per
// tenant and month is guaranteed by a unique index: a second replica, or a
// second run, that computes the same invoice fails to insert it and moves
// on. The job goes back to every closed month with usage and no invoice
// (catch-up after downtime). A record that reaches the store after its
// month's invoice was made is marked late by ingest (controlplane/
// usageingest) and billed on the tenant's next invoice as prior-period
// usage, stamped with that invoice in the transaction that creates it. An
// invoice's lines and totals are never recomputed; Verify recomputes them
// from the records it billed to show that they still match.
//
// Status: draft → issued → paid, and draft or issued → void; nothing else.
// Every invoice that becomes issued does so in Service.issue, inside the
// transaction that changes its status, where Service.OnIssued is called
// (notifications hook there). docs/billing.md has the details.
package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/controlplane/rollup"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/invoice"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
	"github.com/tollgate-dev/tollgate/ent/usagerollup"
)

// JobName names the monthly invoice job's lease.
const JobName = "billing.invoices"

// DefaultGrace is how long after a month ends its invoices wait for usage
// records still on their way (ext_proc spills records while the control
// plane is unreachable and replays them later).
const DefaultGrace = 24 * time.Hour

// Rates are the operator's exchange rates: units of a currency per US
// dollar, times a million. USD is always 1,000,000.
type Rates map[string]int64

// USD is the currency amounts are kept in.
const USD = "USD"

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

// CheckCurrency reports whether code is an ISO 4217-shaped code (three
// capital letters).
func CheckCurrency(field, code string) error {
	if !currencyCode.MatchString(code) {
		return invalid.Field(field, "must be an ISO 4217 code of three capital letters (USD, EUR, …), got %q", code)
	}
	return nil
}

// ParseRate parses CUR=RATE, RATE a decimal number of units per US dollar
// with at most six decimals (EUR=0.92).
func ParseRate(s string) (string, int64, error) {
	code, value, ok := strings.Cut(s, "=")
	if !ok {
		return "", 0, fmt.Errorf("exchange rate %q: want CUR=RATE, e.g. EUR=0.92", s)
	}
	code = strings.ToUpper(strings.TrimSpace(code))
	if err := CheckCurrency("currency", code); err != nil {
		return "", 0, fmt.Errorf("exchange rate %q: %w", s, err)
	}
	r, ok := new(big.Rat).SetString(strings.TrimSpace(value))
	if !ok || r.Sign() <= 0 {
		return "", 0, fmt.Errorf("exchange rate %q: the rate must be a positive decimal number", s)
	}
	micro := new(big.Rat).Mul(r, big.NewRat(1_000_000, 1))
	if !micro.IsInt() || !micro.Num().IsInt64() {
		return "", 0, fmt.Errorf("exchange rate %q: at most six decimals", s)
	}
	return code, micro.Num().Int64(), nil
}

// Config configures a Service.
type Config struct {
	Store *store.Store
	Log   *slog.Logger
	// Rates converts invoices into tenants' currencies. A tenant whose
	// currency has no rate gets no invoice until one is configured (the
	// job reports it every run).
	Rates Rates
	// Grace delays a month's invoices after the month ends (DefaultGrace
	// when zero).
	Grace time.Duration
	// Drafts leaves the job's invoices as drafts, for the operator to issue
	// (BillingService.TransitionInvoice); by default they are issued at
	// once.
	Drafts bool
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// OnIssued, if set, is called in the transaction that issues an
	// invoice, after its status changed: an error rolls the issue back.
	// Notifications of issued invoices belong here.
	OnIssued func(ctx context.Context, tx *ent.Tx, inv *ent.Invoice) error
}

// Service creates, issues and moves invoices.
type Service struct {
	cfg Config

	mu sync.Mutex
	// gone holds the tenant months the job found counted in the rollups
	// but without usage records left to bill, so that each is reported
	// once per process rather than every run.
	gone map[tenantMonth]bool
}

type tenantMonth struct {
	tenant uuid.UUID
	month  time.Time
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	rates := Rates{USD: 1_000_000}
	for k, v := range cfg.Rates {
		rates[k] = v
	}
	cfg.Rates = rates
	return &Service{cfg: cfg, gone: map[tenantMonth]bool{}}
}

// Month returns the calendar month (UTC) that holds t: its first instant
// and the next month's.
func Month(t time.Time) (start, end time.Time) {
	t = t.UTC()
	start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, 1, 0)
}

// ErrNoUsage is returned by CreateInvoice for a month without usage.
var ErrNoUsage = errors.New("no usage in the period")

// ErrExists is returned by CreateInvoice when the tenant's invoice for the
// month exists already.
var ErrExists = errors.New("the invoice exists already")

// IssueDue is the job. It invoices, oldest month first, every month that
// has ended (and whose grace has passed) for every tenant with usage in it
// and no invoice for it, from the month of the earliest invoice, or without
// any invoice yet from the earliest month in the daily rollups (firstMonth):
// a control plane that was down for months catches up, and a month that
// gets its first records of a tenant late (a replay) gets that tenant's
// invoice then. For the last closed month it also invoices the tenants
// whose only billable usage is late records of earlier months. One
// transaction per invoice. It returns the errors after trying every tenant
// and month, so that one tenant (a currency without a rate, say) does not
// hold up the others. A tenant month the rollups count but whose usage
// records are gone (usage retention deleted them before the month was
// invoiced) gets no invoice, and a warning, once per process.
func (s *Service) IssueDue(ctx context.Context) error {
	last := s.lastClosedMonth()
	first, ok, err := s.firstMonth(ctx)
	if err != nil || !ok {
		return err
	}
	var errs []error
	for m := first; !m.After(last); m = m.AddDate(0, 1, 0) {
		tenants, err := s.tenantsToInvoice(ctx, m, m.Equal(last))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, id := range tenants {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			inv, err := s.CreateInvoice(ctx, id, m, !s.cfg.Drafts)
			switch {
			case errors.Is(err, ErrExists):
			case errors.Is(err, ErrNoUsage):
				s.warnGone(ctx, id, m)
			case err != nil:
				errs = append(errs, fmt.Errorf("tenant %s, %s: %w", id, m.Format("2006-01"), err))
			default:
				s.cfg.Log.InfoContext(ctx, "invoice created", "invoice_id", inv.ID, "tenant_id", id,
					"period", m.Format("2006-01"), "status", inv.Status, "total_micros", inv.TotalMicros,
					"requests", inv.Requests)
			}
		}
	}
	return errors.Join(errs...)
}

// lastClosedMonth is the latest month whose grace has passed: the previous
// month once the grace after its end is over, else the one before.
func (s *Service) lastClosedMonth() time.Time {
	now := s.cfg.Now().UTC()
	thisMonth, _ := Month(now)
	last := thisMonth.AddDate(0, -1, 0)
	if now.Before(thisMonth.Add(s.cfg.Grace)) {
		last = last.AddDate(0, -1, 0)
	}
	return last
}

// warnGone reports, once per process, a tenant month that the rollups
// count but that has no usage records left to bill: they were deleted
// (usage retention) before the month was invoiced, so its usage cannot be
// billed, and the job finds the month again every run.
func (s *Service) warnGone(ctx context.Context, tenant uuid.UUID, month time.Time) {
	s.mu.Lock()
	seen := s.gone[tenantMonth{tenant, month}]
	s.gone[tenantMonth{tenant, month}] = true
	s.mu.Unlock()
	if !seen {
		s.cfg.Log.WarnContext(ctx, "month not invoiced: the rollups count the tenant's usage but its usage records are gone (usage retention deleted them before the month was invoiced); reported once per process",
			"tenant_id", tenant, "period", month.Format("2006-01"))
	}
}

// firstMonth is where the job's walk starts: the month of the earliest
// invoice, or without any invoice the month of the earliest daily rollup
// row; ok is false without either. Months before the first invoice ever
// made are not billing's business: they were used before billing was
// (the release before catch-up invoiced only the previous month, and an
// upgrade must not invoice and issue years of history), while a
// deployment that has made no invoice yet invoices all its usage. Each is
// one read at the start of an index (invoices' period_start, rollups'
// (period, bucket_start)).
func (s *Service) firstMonth(ctx context.Context) (time.Time, bool, error) {
	inv, err := s.cfg.Store.Client().Invoice.Query().Order(ent.Asc(invoice.FieldPeriodStart)).
		Select(invoice.FieldPeriodStart).First(ctx)
	switch {
	case err == nil:
		m, _ := Month(inv.PeriodStart)
		return m, true, nil
	case !ent.IsNotFound(err):
		return time.Time{}, false, fmt.Errorf("finding the first invoiced month: %w", err)
	}
	return s.firstUsageMonth(ctx)
}

// firstUsageMonth is the month of the earliest daily rollup row (one read at
// the start of the (period, bucket_start) index); ok is false without any.
// Every usage record is counted in the rollups, late ones included.
func (s *Service) firstUsageMonth(ctx context.Context) (time.Time, bool, error) {
	r, err := s.cfg.Store.Client().UsageRollup.Query().Where(usagerollup.PeriodEQ(usagerollup.PeriodDay)).
		Order(ent.Asc(usagerollup.FieldBucketStart)).Select(usagerollup.FieldBucketStart).First(ctx)
	if ent.IsNotFound(err) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("finding the first month with usage: %w", err)
	}
	m, _ := Month(r.BucketStart)
	return m, true, nil
}

// tenantsToInvoice lists the tenants with usage in the month that starts at
// start, from the daily rollups (one small query rather than a scan of the
// month's records), and with pending too those with late records waiting
// for an invoice (from their partial index), less those with an invoice
// for the month.
func (s *Service) tenantsToInvoice(ctx context.Context, start time.Time, pending bool) ([]uuid.UUID, error) {
	_, end := Month(start)
	rows, err := rollup.Sum(ctx, s.cfg.Store, rollup.Filter{Period: rollup.Day, Start: start, End: end}, rollup.ByTenant)
	if err != nil {
		return nil, err
	}
	var ids []uuid.UUID
	for _, r := range rows {
		ids = append(ids, r.TenantID)
	}
	c := s.cfg.Store.Client()
	if pending {
		var late []struct {
			TenantID uuid.UUID `sql:"tenant_id"`
		}
		err := c.UsageRecord.Query().Where(pendingLate()).GroupBy(usagerecord.FieldTenantID).Scan(ctx, &late)
		if err != nil {
			return nil, fmt.Errorf("listing tenants with late usage records: %w", err)
		}
		for _, r := range late {
			ids = append(ids, r.TenantID)
		}
	}
	done, err := c.Invoice.Query().Where(invoice.PeriodStart(start)).Select(invoice.FieldTenantID).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing invoices of %s: %w", start.Format("2006-01"), err)
	}
	skip := map[uuid.UUID]bool{}
	for _, inv := range done {
		skip[inv.TenantID] = true
	}
	var out []uuid.UUID
	for _, id := range ids {
		if !skip[id] {
			skip[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// CreateInvoice computes and stores the tenant's invoice for the month that
// starts at start, issued when issue is true, in one transaction: the
// month's own records, and the tenant's late records of earlier months that
// no invoice has billed yet, which it stamps with the invoice's id in the
// same transaction so that they are billed once. It returns ErrExists when
// the invoice exists (also when another replica stored it first) and
// ErrNoUsage when there is nothing to bill. A tenant that no longer exists
// is invoiced in US dollars with no contact: its usage still has to add up.
func (s *Service) CreateInvoice(ctx context.Context, tenantID uuid.UUID, start time.Time, issue bool) (*ent.Invoice, error) {
	start, end := Month(start)
	var created *ent.Invoice
	err := s.cfg.Store.InTx(ctx, func(tx *ent.Tx) error {
		created = nil
		exists, err := tx.Invoice.Query().Where(invoice.TenantID(tenantID), invoice.PeriodStart(start)).Exist(ctx)
		if err != nil {
			return err
		}
		if exists {
			return ErrExists
		}
		currency, slug := USD, tenantID.String()[:8]
		var name, email, ref string
		t, err := tx.Tenant.Get(ctx, tenantID)
		switch {
		case ent.IsNotFound(err):
		case err != nil:
			return err
		default:
			currency, slug, name, email, ref = t.Currency, t.Slug, t.Name, t.BillingEmail, t.BillingReference
		}
		rate, ok := s.cfg.Rates[currency]
		if !ok {
			return fmt.Errorf("no exchange rate for %s: give the control plane --exchange-rate %s=RATE", currency, currency)
		}
		c, err := Compute(ctx, tx.Client(), tenantID, start, end)
		if err != nil {
			return err
		}
		if c.Requests == 0 {
			return ErrNoUsage
		}
		var totalCur int64
		lines := make([]*ent.InvoiceLineCreate, len(c.Lines))
		id := uuid.New()
		for i, l := range c.Lines {
			cur := Convert(l.Amount, rate)
			totalCur += cur
			lines[i] = tx.InvoiceLine.Create().SetInvoiceID(id).SetPosition(i).SetModel(l.Model).SetKind(l.Kind).
				SetNillablePriceEffectiveFrom(l.PriceFrom).SetUnitPriceMicrosPerMtok(l.UnitPrice).
				SetQuantity(l.Quantity).SetAmountMicros(l.Amount).SetAmountCurrencyMicros(cur).
				SetNillableServicePeriodStart(l.Period)
		}
		inv, err := tx.Invoice.Create().SetID(id).SetTenantID(tenantID).
			SetNumber(fmt.Sprintf("TG-%s-%s", start.Format("200601"), slug)).
			SetPeriodStart(start).SetPeriodEnd(end).SetCurrency(currency).SetExchangeRateMicros(rate).
			SetTotalMicros(c.Total).SetTotalCurrencyMicros(totalCur).SetRequests(c.Requests).
			SetBillingName(name).SetBillingEmail(email).SetBillingReference(ref).
			Save(ctx)
		if err != nil {
			return err
		}
		if err := tx.InvoiceLine.CreateBulk(lines...).Exec(ctx); err != nil {
			return fmt.Errorf("storing invoice lines: %w", err)
		}
		// The late records just billed are this invoice's, and no other's.
		stamped, err := tx.UsageRecord.Update().Where(PendingLate(tenantID)...).
			Where(usagerecord.CreatedAtLT(start)).SetLateInvoiceID(id).Save(ctx)
		if err != nil {
			return fmt.Errorf("stamping late usage records with their invoice: %w", err)
		}
		if int64(stamped) != c.LateRequests {
			// Serializable isolation makes this impossible; committing
			// would bill records the lines do not show, or twice.
			return fmt.Errorf("stamped %d late usage records, billed %d", stamped, c.LateRequests)
		}
		if err := audit(ctx, tx, "system:"+JobName, "invoice.create", inv); err != nil {
			return err
		}
		if issue {
			if inv, err = s.Transition(ctx, tx, inv, invoice.StatusIssued, "system:"+JobName); err != nil {
				return err
			}
		}
		created = inv
		return nil
	})
	if ent.IsConstraintError(err) {
		// Another replica stored it between our check and our insert.
		return nil, ErrExists
	}
	if err != nil {
		return nil, err
	}
	return created, nil
}

// transitions are the status changes allowed.
var transitions = map[invoice.Status][]invoice.Status{
	invoice.StatusDraft:  {invoice.StatusIssued, invoice.StatusVoid},
	invoice.StatusIssued: {invoice.StatusPaid, invoice.StatusVoid},
}

// ErrTransition is returned for a status change that is not allowed.
var ErrTransition = errors.New("invoice status change not allowed")

// Transition moves inv to status to in tx, stamps the time, and records an
// audit event for actor. Issuing goes through issue (and OnIssued).
func (s *Service) Transition(ctx context.Context, tx *ent.Tx, inv *ent.Invoice, to invoice.Status, actor string) (*ent.Invoice, error) {
	allowed := false
	for _, st := range transitions[inv.Status] {
		allowed = allowed || st == to
	}
	if !allowed {
		return nil, fmt.Errorf("%w: %s → %s (allowed: draft → issued or void, issued → paid or void)", ErrTransition, inv.Status, to)
	}
	now := s.cfg.Now().UTC()
	u := tx.Invoice.UpdateOne(inv).SetStatus(to)
	switch to {
	case invoice.StatusIssued:
		u.SetIssuedAt(now)
	case invoice.StatusPaid:
		u.SetPaidAt(now)
	case invoice.StatusVoid:
		u.SetVoidedAt(now)
	}
	// The status it had must still be the status it has: two concurrent
	// transitions of one invoice do not both succeed.
	u.Where(invoice.StatusEQ(inv.Status))
	updated, err := u.Save(ctx)
	if ent.IsNotFound(err) {
		return nil, fmt.Errorf("%w: the invoice changed meanwhile; read it again", ErrTransition)
	}
	if err != nil {
		return nil, fmt.Errorf("changing invoice status: %w", err)
	}
	if err := audit(ctx, tx, actor, "invoice."+actionOf[to], updated); err != nil {
		return nil, err
	}
	if to == invoice.StatusIssued {
		if err := s.issue(ctx, tx, updated); err != nil {
			return nil, err
		}
	}
	return updated, nil
}

var actionOf = map[invoice.Status]string{
	invoice.StatusIssued: "issue", invoice.StatusPaid: "pay", invoice.StatusVoid: "void",
}

// issue is where every invoice becomes issued, in the transaction that
// issued it: the place to hook anything that must happen exactly when an
// invoice is issued (OnIssued).
func (s *Service) issue(ctx context.Context, tx *ent.Tx, inv *ent.Invoice) error {
	if s.cfg.OnIssued == nil {
		return nil
	}
	if err := s.cfg.OnIssued(ctx, tx, inv); err != nil {
		return fmt.Errorf("invoice issued hook: %w", err)
	}
	return nil
}

// audit records an invoice event; like the admin API's, it names no
// values.
func audit(ctx context.Context, tx *ent.Tx, actor, action string, inv *ent.Invoice) error {
	return tx.AuditEvent.Create().SetActor(actor).SetAction(action).SetTargetType("invoice").
		SetTargetID(inv.ID.String()).SetTenantID(inv.TenantID).Exec(ctx)
}

// Verification compares an invoice with what its usage records give today.
type Verification struct {
	Recomputed  Computed
	Differences []string // empty when the invoice matches
	// PendingLate counts the tenant's late records waiting for its next
	// invoice.
	PendingLate int64
}

// Verify recomputes inv from the raw usage records it bills — its month's
// records that are not late, and the late records stamped with it — and
// the price history, and lists every difference from its stored lines and
// totals. A record that arrives after the invoice was made is late and
// billed by the next invoice, so it makes no difference here; deleted
// records (a usage retention purge) do, as do records that arrived late
// before late records were tracked.
func (s *Service) Verify(ctx context.Context, inv *ent.Invoice) (Verification, error) {
	c := s.cfg.Store.Client()
	computed, err := computeInvoice(ctx, c, inv.TenantID, inv.PeriodStart.UTC(), inv.PeriodEnd.UTC(), BilledLate(inv.ID))
	if err != nil {
		return Verification{}, err
	}
	stored := inv.Edges.Lines
	if stored == nil {
		if stored, err = inv.QueryLines().All(ctx); err != nil {
			return Verification{}, fmt.Errorf("reading invoice lines: %w", err)
		}
	}
	pending, err := c.UsageRecord.Query().Where(PendingLate(inv.TenantID)...).Count(ctx)
	if err != nil {
		return Verification{}, fmt.Errorf("counting late usage records: %w", err)
	}
	v := Verification{Recomputed: computed, PendingLate: int64(pending)}
	if computed.Total != inv.TotalMicros {
		v.Differences = append(v.Differences, fmt.Sprintf("total: invoice %d, records %d micro-dollars", inv.TotalMicros, computed.Total))
	}
	if computed.Requests != inv.Requests {
		v.Differences = append(v.Differences, fmt.Sprintf("requests: invoice %d, records %d", inv.Requests, computed.Requests))
	}
	describe := func(l Line) string {
		from, period := "", ""
		if l.PriceFrom != nil {
			from = " from " + l.PriceFrom.UTC().Format(time.RFC3339)
		}
		if l.Period != nil {
			period = "prior period " + l.Period.UTC().Format("2006-01") + ": "
		}
		return fmt.Sprintf("%s%s %s%s: %d tokens at %d, %d micro-dollars", period, l.Model, l.Kind, from, l.Quantity, l.UnitPrice, l.Amount)
	}
	want := map[string]bool{}
	for _, l := range computed.Lines {
		want[describe(l)] = true
	}
	have := map[string]bool{}
	for _, l := range stored {
		d := describe(Line{Model: l.Model, Kind: l.Kind, PriceFrom: l.PriceEffectiveFrom, UnitPrice: l.UnitPriceMicrosPerMtok,
			Quantity: l.Quantity, Amount: l.AmountMicros, Period: l.ServicePeriodStart})
		have[d] = true
		if !want[d] {
			v.Differences = append(v.Differences, "only on the invoice: "+d)
		}
	}
	for _, l := range computed.Lines {
		if d := describe(l); !have[d] {
			v.Differences = append(v.Differences, "only in the records: "+d)
		}
	}
	return v, nil
}
