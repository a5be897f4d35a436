package billing

import (
	"cmp"
	"context"
	"fmt"
	"math/big"
	"slices"
	"time"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/invoiceline"
	"github.com/tollgate-dev/tollgate/ent/model"
	"github.com/tollgate-dev/tollgate/ent/modelprice"
	"github.com/tollgate-dev/tollgate/ent/predicate"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
)

// Line is one line of a computed invoice, in micro-dollars.
type Line struct {
	Model     string
	Kind      invoiceline.Kind
	PriceFrom *time.Time // when the line's price took effect; nil for adjustments
	UnitPrice int64      // micro-dollars per million tokens
	Quantity  int64      // tokens
	Amount    int64
	// Period is, on a prior-period line, the first instant of the month
	// its (late) records were made in; nil for the invoice's own month.
	Period *time.Time
}

// Computed is an invoice's content as the usage records and price history
// give it.
type Computed struct {
	Lines    []Line
	Total    int64 // micro-dollars: the sum of the records' cost
	Requests int64
	// LateRequests are the late records of earlier months among Requests,
	// billed as prior-period usage.
	LateRequests int64
}

// modelSums adds up one model's records in one interval.
type modelSums struct {
	Model       string `sql:"model"`
	Requests    int64  `sql:"requests"`
	InputTokens int64  `sql:"input_tokens"`
	Cached      int64  `sql:"cached"`
	Output      int64  `sql:"output_tokens"`
	Cost        int64  `sql:"cost_micros"`
}

// sumByModel adds up a tenant's records in [from, to) that where selects
// per model, in one aggregate query over an index range ((tenant_id,
// created_at), or a late-record index). Cached tokens count at most a
// record's input, as ext_proc charges them.
func sumByModel(ctx context.Context, c *ent.Client, where []predicate.UsageRecord, from, to time.Time) ([]modelSums, error) {
	// SUM of integers is NUMERIC on PostgreSQL and DECIMAL on CockroachDB,
	// and NULL over no rows: cast back, default 0.
	agg := func(as string, expr func(s *entsql.Selector) string) ent.AggregateFunc {
		return func(s *entsql.Selector) string {
			return entsql.As(fmt.Sprintf("CAST(COALESCE(SUM(%s), 0) AS BIGINT)", expr(s)), as)
		}
	}
	col := func(name string) func(s *entsql.Selector) string {
		return func(s *entsql.Selector) string { return s.C(name) }
	}
	var rows []modelSums
	err := c.UsageRecord.Query().
		Where(where...).
		Where(usagerecord.CreatedAtGTE(from), usagerecord.CreatedAtLT(to)).
		GroupBy(usagerecord.FieldModel).
		Aggregate(
			func(s *entsql.Selector) string { return entsql.As("COUNT(*)", "requests") },
			agg("input_tokens", col(usagerecord.FieldInputTokens)),
			agg("cached", func(s *entsql.Selector) string {
				in, cached := s.C(usagerecord.FieldInputTokens), s.C(usagerecord.FieldCachedInputTokens)
				return fmt.Sprintf("CASE WHEN %s > %s THEN %s ELSE %s END", cached, in, in, cached)
			}),
			agg("output_tokens", col(usagerecord.FieldOutputTokens)),
			agg("cost_micros", col(usagerecord.FieldCostMicros)),
		).Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("adding up usage %s to %s: %w", from.Format(time.RFC3339), to.Format(time.RFC3339), err)
	}
	return rows, nil
}

// prices returns the price history of the model a tenant reaches by name:
// its own model of that name, else the platform's (as ext_proc resolves
// names), oldest first. nil when neither exists any more.
func prices(ctx context.Context, c *ent.Client, tenantID uuid.UUID, name string) ([]*ent.ModelPrice, error) {
	m, err := c.Model.Query().Where(model.Name(name), model.TenantID(tenantID)).Only(ctx)
	if ent.IsNotFound(err) {
		m, err = c.Model.Query().Where(model.Name(name), model.TenantIDIsNil()).Only(ctx)
	}
	if ent.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("finding model %q: %w", name, err)
	}
	ps, err := c.ModelPrice.Query().Where(modelprice.ModelID(m.ID)).Order(ent.Asc(modelprice.FieldEffectiveFrom)).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading prices of model %q: %w", name, err)
	}
	return ps, nil
}

// priceAt returns the price in force at t: the last to take effect at or
// before t (ext_proc's rule).
func priceAt(ps []*ent.ModelPrice, t time.Time) *ent.ModelPrice {
	var in *ent.ModelPrice
	for _, p := range ps {
		if p.EffectiveFrom.After(t) {
			break
		}
		in = p
	}
	return in
}

// OwnRecords selects the tenant's records an invoice of their month bills:
// those that are not late. (A late record reached the store after its
// month's invoice was made; the tenant's next invoice bills it.)
func OwnRecords(tenantID uuid.UUID) []predicate.UsageRecord {
	return []predicate.UsageRecord{usagerecord.TenantID(tenantID), usagerecord.Late(false)}
}

// PendingLate selects the tenant's late records that no invoice has billed
// yet, written as the partial index usagerecord_late_unbilled is, so that
// SQLite and PostgreSQL both read that index (SQLite only when the query
// repeats the index's terms).
func PendingLate(tenantID uuid.UUID) []predicate.UsageRecord {
	return []predicate.UsageRecord{usagerecord.TenantID(tenantID), pendingLate()}
}

func pendingLate() predicate.UsageRecord {
	return func(s *entsql.Selector) {
		s.Where(entsql.And(
			entsql.P(func(b *entsql.Builder) { b.Ident(s.C(usagerecord.FieldLate)) }),
			entsql.IsNull(s.C(usagerecord.FieldLateInvoiceID)),
		))
	}
}

// BilledLate selects the late records an invoice billed as prior-period
// usage.
func BilledLate(invoiceID uuid.UUID) []predicate.UsageRecord {
	return []predicate.UsageRecord{usagerecord.LateInvoiceID(invoiceID)}
}

// Compute is what the tenant's invoice for the month [start, end) bills if
// it is made now: the month's own records (OwnRecords), and the late
// records of earlier months that no invoice has billed (PendingLate), as
// prior-period lines per month.
func Compute(ctx context.Context, c *ent.Client, tenantID uuid.UUID, start, end time.Time) (Computed, error) {
	pending := append(PendingLate(tenantID), usagerecord.CreatedAtLT(start))
	return computeInvoice(ctx, c, tenantID, start, end, pending)
}

// computeInvoice adds up the month's own records and, month by month, the
// late records late selects.
func computeInvoice(ctx context.Context, c *ent.Client, tenantID uuid.UUID, start, end time.Time, late []predicate.UsageRecord) (Computed, error) {
	out, err := computeRecords(ctx, c, tenantID, OwnRecords(tenantID), start, end)
	if err != nil {
		return Computed{}, err
	}
	months, err := monthsOf(ctx, c, late)
	if err != nil {
		return Computed{}, err
	}
	for _, m := range months {
		mEnd := m.AddDate(0, 1, 0)
		prior, err := computeRecords(ctx, c, tenantID, late, m, mEnd)
		if err != nil {
			return Computed{}, err
		}
		for _, l := range prior.Lines {
			l.Period = &m
			out.Lines = append(out.Lines, l)
		}
		out.Total += prior.Total
		out.Requests += prior.Requests
		out.LateRequests += prior.Requests
	}
	slices.SortFunc(out.Lines, compareLines)
	return out, nil
}

// monthsOf lists the months (their first instants, UTC) that hold records
// where selects, oldest first: one indexed read of the earliest record
// per month found, so a handful of late records cost a handful of reads.
func monthsOf(ctx context.Context, c *ent.Client, where []predicate.UsageRecord) ([]time.Time, error) {
	var out []time.Time
	for {
		q := c.UsageRecord.Query().Where(where...)
		if len(out) > 0 {
			q.Where(usagerecord.CreatedAtGTE(out[len(out)-1].AddDate(0, 1, 0)))
		}
		r, err := q.Order(ent.Asc(usagerecord.FieldCreatedAt)).Select(usagerecord.FieldCreatedAt).First(ctx)
		if ent.IsNotFound(err) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("finding the months of late usage records: %w", err)
		}
		m, _ := Month(r.CreatedAt)
		out = append(out, m)
	}
}

// computeRecords adds up the tenant's records in [start, end) that where
// selects into invoice lines: per model, its uncached input, cached input
// and output tokens at each price that was in force during the period (a
// price change splits the period where it takes effect), and an adjustment
// line that makes the model's lines add up to exactly what its records were
// charged. The total is therefore the sum of the records' cost_micros, to
// the micro-dollar. It reads only immutable data (records, and prices that
// are never edited nor back-dated), so it gives the same result every time
// it runs over the same records.
func computeRecords(ctx context.Context, c *ent.Client, tenantID uuid.UUID, where []predicate.UsageRecord, start, end time.Time) (Computed, error) {
	whole, err := sumByModel(ctx, c, where, start, end)
	if err != nil {
		return Computed{}, err
	}
	history := map[string][]*ent.ModelPrice{}
	cuts := []time.Time{start, end}
	for _, m := range whole {
		ps, err := prices(ctx, c, tenantID, m.Model)
		if err != nil {
			return Computed{}, err
		}
		history[m.Model] = ps
		for _, p := range ps {
			if p.EffectiveFrom.After(start) && p.EffectiveFrom.Before(end) {
				cuts = append(cuts, p.EffectiveFrom.UTC())
			}
		}
	}
	slices.SortFunc(cuts, time.Time.Compare)
	cuts = slices.CompactFunc(cuts, time.Time.Equal)

	type lineKey struct {
		model string
		kind  invoiceline.Kind
		from  time.Time
	}
	lines := map[lineKey]*Line{}
	recorded := map[string]int64{}
	var out Computed
	for i := 0; i+1 < len(cuts); i++ {
		sums := whole
		if len(cuts) > 2 {
			if sums, err = sumByModel(ctx, c, where, cuts[i], cuts[i+1]); err != nil {
				return Computed{}, err
			}
		}
		for _, s := range sums {
			out.Requests += s.Requests
			out.Total += s.Cost
			recorded[s.Model] += s.Cost
			p := priceAt(history[s.Model], cuts[i])
			if p == nil {
				continue // all of it goes to the adjustment
			}
			for _, q := range []struct {
				kind  invoiceline.Kind
				qty   int64
				price int64
			}{
				{invoiceline.KindInput, s.InputTokens - s.Cached, p.InputMicrosPerMtok},
				{invoiceline.KindCachedInput, s.Cached, p.CachedInputMicrosPerMtok},
				{invoiceline.KindOutput, s.Output, p.OutputMicrosPerMtok},
			} {
				if q.qty == 0 {
					continue
				}
				k := lineKey{s.Model, q.kind, p.EffectiveFrom.UTC()}
				if lines[k] == nil {
					from := p.EffectiveFrom.UTC()
					lines[k] = &Line{Model: s.Model, Kind: q.kind, PriceFrom: &from, UnitPrice: q.price}
				}
				lines[k].Quantity += q.qty
			}
		}
	}
	priced := map[string]int64{}
	for _, l := range lines {
		l.Amount = perMillion(l.Quantity, l.UnitPrice)
		priced[l.Model] += l.Amount
		out.Lines = append(out.Lines, *l)
	}
	for m, cost := range recorded {
		if d := cost - priced[m]; d != 0 {
			out.Lines = append(out.Lines, Line{Model: m, Kind: invoiceline.KindAdjustment, Amount: d})
		}
	}
	slices.SortFunc(out.Lines, compareLines)
	return out, nil
}

var kindOrder = map[invoiceline.Kind]int{
	invoiceline.KindInput: 0, invoiceline.KindCachedInput: 1, invoiceline.KindOutput: 2, invoiceline.KindAdjustment: 3,
}

// compareLines orders an invoice's lines: its own month's first, then
// prior-period usage oldest month first; within a month by model, kind and
// price.
func compareLines(a, b Line) int {
	return cmp.Or(
		comparePeriods(a.Period, b.Period),
		cmp.Compare(a.Model, b.Model),
		cmp.Compare(kindOrder[a.Kind], kindOrder[b.Kind]),
		compareTimes(a.PriceFrom, b.PriceFrom),
	)
}

func comparePeriods(a, b *time.Time) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return a.Compare(*b)
}

func compareTimes(a, b *time.Time) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return a.Compare(*b)
}

var million = big.NewInt(1_000_000)

// perMillion is qty × price / 1,000,000 rounded half up, computed exactly:
// a month of a large tenant's tokens times a price can pass int64.
func perMillion(qty, price int64) int64 {
	n := new(big.Int).Mul(big.NewInt(qty), big.NewInt(price))
	return roundDiv(n, million)
}

// Convert turns micro-dollars into micro-units of a currency at rate
// (units per dollar × 1,000,000), rounding half away from zero.
func Convert(micros, rate int64) int64 {
	n := new(big.Int).Mul(big.NewInt(micros), big.NewInt(rate))
	return roundDiv(n, million)
}

// roundDiv divides n by d (d > 0), rounding half away from zero.
func roundDiv(n, d *big.Int) int64 {
	neg := n.Sign() < 0
	abs := new(big.Int).Abs(n)
	half := new(big.Int).Rsh(d, 1)
	q := new(big.Int).Div(abs.Add(abs, half), d)
	if neg {
		q.Neg(q)
	}
	return q.Int64()
}
