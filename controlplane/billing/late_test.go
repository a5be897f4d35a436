package billing

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/controlplane/usageingest"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/invoice"
	"github.com/tollgate-dev/tollgate/ent/invoiceline"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
)

var (
	may = april.AddDate(0, 1, 0)
	// After April's grace, on 2 May.
	mayRunAt = may.Add(DefaultGrace + time.Hour)
)

func jobAt(st *store.Store, at time.Time) *Service {
	return New(Config{Log: quiet(), Store: st, Now: func() time.Time { return at }})
}

func invoiceOf(t *testing.T, st *store.Store, tenant uuid.UUID, month time.Time) *ent.Invoice {
	t.Helper()
	inv, err := st.Client().Invoice.Query().Where(invoice.TenantID(tenant), invoice.PeriodStart(month)).Only(context.Background())
	if err != nil {
		t.Fatalf("the invoice of %s: %v", month.Format("2006-01"), err)
	}
	return inv
}

func verifyClean(t *testing.T, svc *Service, inv *ent.Invoice, pending int64) {
	t.Helper()
	v, err := svc.Verify(context.Background(), inv)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Differences) != 0 || v.PendingLate != pending {
		t.Errorf("verifying %s: differences %q, %d late records pending, want none and %d", inv.Number, v.Differences, v.PendingLate, pending)
	}
}

// A record that reaches the store after its month's invoice was made is
// billed once, on the tenant's next invoice, as prior-period usage of its
// own month; the old invoice keeps verifying. A tenant whose only usage
// since is late records still gets that next invoice.
func TestLateRecordIsBilledOnceOnTheNextInvoice(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		f := newFixture(t, st)
		p := price{2_000_000, 1_000_000, 8_000_000}
		f.model("m", map[time.Time]price{march.AddDate(0, -1, 0): p})
		acme, quiet := f.tenant("acme", USD), f.tenant("quiet", USD)
		f.store(usage(acme, "m", march.Add(time.Hour), 1000, 0, 100, chargeOf(p, 1000, 0, 100)),
			usage(quiet, "m", march.Add(time.Hour), 500, 0, 0, chargeOf(p, 500, 0, 0)))
		if err := jobAt(st, runAt).IssueDue(ctx); err != nil {
			t.Fatal(err)
		}
		marchInv := invoiceOf(t, st, acme, march)

		// Replays later than the grace: two March records of acme, one of
		// quiet. acme also uses the gateway in April; quiet does not.
		lateA := []*usagev1.UsageRecord{
			usage(acme, "m", midMarch, 3000, 1000, 200, chargeOf(p, 3000, 1000, 200)),
			usage(acme, "retired", midMarch, 10, 0, 10, 33),
		}
		lateQ := usage(quiet, "m", midMarch, 700, 0, 70, chargeOf(p, 700, 0, 70))
		aprilOwn := usage(acme, "m", april.Add(time.Hour), 100, 0, 10, chargeOf(p, 100, 0, 10))
		f.store(append(lateA, lateQ, aprilOwn)...)
		for _, r := range append(lateA, lateQ) {
			rec := st.Client().UsageRecord.Query().Where(usagerecord.RequestID(r.GetRequestId())).OnlyX(ctx)
			if !rec.Late || rec.LateInvoiceID != nil {
				t.Fatalf("record %s: late %v, billed by %v; want late and unbilled", r.GetRequestId(), rec.Late, rec.LateInvoiceID)
			}
		}
		if st.Client().UsageRecord.Query().Where(usagerecord.RequestID(aprilOwn.GetRequestId())).OnlyX(ctx).Late {
			t.Fatal("a record of a month without an invoice was marked late")
		}
		svc := jobAt(st, mayRunAt)
		verifyClean(t, svc, marchInv, 2)

		// The job runs twice, and four runners at once: April is billed
		// once per tenant.
		if err := svc.IssueDue(ctx); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if err := jobAt(st, mayRunAt).IssueDue(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()

		aprilInv := invoiceOf(t, st, acme, april)
		wantTotal := aprilOwn.GetCostMicros() + lateA[0].GetCostMicros() + lateA[1].GetCostMicros()
		if aprilInv.TotalMicros != wantTotal || aprilInv.Requests != 3 {
			t.Errorf("April's invoice: %d micro-dollars for %d requests, want %d for 3", aprilInv.TotalMicros, aprilInv.Requests, wantTotal)
		}
		var sum int64
		prior := map[string]int64{}
		ls := lines(t, st, aprilInv)
		for i, l := range ls {
			sum += l.AmountMicros
			if l.ServicePeriodStart == nil {
				if i > 0 && ls[i-1].ServicePeriodStart != nil {
					t.Errorf("line %d of April's own usage follows prior-period lines", i)
				}
				continue
			}
			if !l.ServicePeriodStart.Equal(march) {
				t.Errorf("prior-period line for %s, want March", l.ServicePeriodStart)
			}
			prior[l.Model+"/"+string(l.Kind)] = l.Quantity
			if l.Kind == invoiceline.KindAdjustment {
				prior[l.Model+"/"+string(l.Kind)] = l.AmountMicros
			}
		}
		if sum != wantTotal {
			t.Errorf("April's lines add up to %d, want %d", sum, wantTotal)
		}
		want := map[string]int64{"m/input": 2000, "m/cached_input": 1000, "m/output": 200, "retired/adjustment": 33}
		if fmt.Sprint(prior) != fmt.Sprint(want) {
			t.Errorf("prior-period lines %v, want %v", prior, want)
		}
		for _, r := range lateA {
			rec := st.Client().UsageRecord.Query().Where(usagerecord.RequestID(r.GetRequestId())).OnlyX(ctx)
			if rec.LateInvoiceID == nil || *rec.LateInvoiceID != aprilInv.ID {
				t.Errorf("late record billed by %v, want April's invoice %s", rec.LateInvoiceID, aprilInv.ID)
			}
		}
		verifyClean(t, svc, marchInv, 0)
		verifyClean(t, svc, aprilInv, 0)

		// quiet had no April usage of its own: an invoice of its late record.
		quietApril := invoiceOf(t, st, quiet, april)
		ql := lines(t, st, quietApril)
		if quietApril.TotalMicros != lateQ.GetCostMicros() || quietApril.Requests != 1 || len(ql) == 0 || ql[0].ServicePeriodStart == nil {
			t.Errorf("quiet's April invoice: %d micro-dollars, %d requests, lines %v; want its late March record only", quietApril.TotalMicros, quietApril.Requests, ql)
		}
		verifyClean(t, svc, quietApril, 0)

		// Nothing is billed twice: June's run finds nothing left to bill.
		if err := jobAt(st, may.AddDate(0, 1, 0).Add(DefaultGrace+time.Hour)).IssueDue(ctx); err != nil {
			t.Fatal(err)
		}
		if n := st.Client().Invoice.Query().CountX(ctx); n != 4 {
			t.Errorf("%d invoices, want March and April of both tenants", n)
		}

		// The export names the period of each prior-period line.
		rows, err := csv.NewReader(bytes.NewReader(mustCSV(t, aprilInv, ls))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		periods := map[string]int{}
		for _, r := range rows[1:] {
			periods[r[len(r)-1]]++
		}
		if rows[0][len(rows[0])-1] != "service_period_start" || periods["2026-03-01"] != 4 || periods[""] != len(rows)-1-4 {
			t.Errorf("CSV: header %v, service periods %v", rows[0], periods)
		}
	})
}

func mustCSV(t *testing.T, inv *ent.Invoice, ls []*ent.InvoiceLine) []byte {
	t.Helper()
	b, err := CSV(inv, ls)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// logged records the periods of the invoices the job reports, in order.
type logged struct {
	mu      sync.Mutex
	periods []string
	// warnings are "tenant_id period" of each warning.
	warnings []string
}

func (l *logged) Enabled(context.Context, slog.Level) bool { return true }
func (l *logged) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logged) WithGroup(string) slog.Handler            { return l }
func (l *logged) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		var tenant, period string
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "tenant_id":
				tenant = a.Value.String()
			case "period":
				period = a.Value.String()
			}
			return true
		})
		l.mu.Lock()
		l.warnings = append(l.warnings, tenant+" "+period)
		l.mu.Unlock()
		return nil
	}
	if r.Message != "invoice created" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "period" {
			l.mu.Lock()
			l.periods = append(l.periods, a.Value.String())
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

// A control plane that was down from January to April invoices January,
// February and March when it comes back, oldest first; a month that gets a
// tenant's first record only later is invoiced then, with that record as
// its own usage (not late: the month had no invoice).
func TestCatchUpInvoicesEveryMissedMonthOldestFirst(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		f := newFixture(t, st)
		acme, other := f.tenant("acme", USD), f.tenant("other", USD)
		jan, feb := march.AddDate(0, -2, 0), march.AddDate(0, -1, 0)
		f.store(usage(acme, "m", jan.Add(time.Hour), 10, 0, 10, 100),
			usage(acme, "m", feb.Add(time.Hour), 10, 0, 10, 200),
			usage(acme, "m", march.Add(time.Hour), 10, 0, 10, 300),
			usage(acme, "m", april.Add(time.Hour), 10, 0, 10, 400))

		// Within March's grace, on 1 April: January and February.
		log := &logged{}
		svc := New(Config{Log: slog.New(log), Store: st, Now: func() time.Time { return april.Add(DefaultGrace / 2) }})
		if err := svc.IssueDue(ctx); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(log.periods, " "); got != "2026-01 2026-02" {
			t.Fatalf("within March's grace the job invoiced %q, want 2026-01 2026-02", got)
		}
		log.periods = nil
		svc = New(Config{Log: slog.New(log), Store: st, Now: func() time.Time { return runAt }})
		if err := svc.IssueDue(ctx); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(log.periods, " "); got != "2026-03" {
			t.Fatalf("after the grace the job invoiced %q, want 2026-03", got)
		}
		for m, total := range map[time.Time]int64{jan: 100, feb: 200, march: 300} {
			if inv := invoiceOf(t, st, acme, m); inv.TotalMicros != total || inv.Requests != 1 {
				t.Errorf("%s: %d micro-dollars for %d requests, want %d for 1", inv.Number, inv.TotalMicros, inv.Requests, total)
			}
		}

		// other's February record arrives now: February had no invoice for
		// other, so the record is not late, and February is invoiced.
		rec := usage(other, "m", feb.Add(2*time.Hour), 10, 0, 10, 250)
		f.store(rec)
		if st.Client().UsageRecord.Query().Where(usagerecord.RequestID(rec.GetRequestId())).OnlyX(ctx).Late {
			t.Fatal("a record of a month its tenant has no invoice for was marked late")
		}
		log.periods = nil
		if err := svc.IssueDue(ctx); err != nil {
			t.Fatal(err)
		}
		inv := invoiceOf(t, st, other, feb)
		if got := strings.Join(log.periods, " "); got != "2026-02" || inv.TotalMicros != 250 {
			t.Errorf("invoiced %q, other's February %d micro-dollars; want 2026-02, 250", got, inv.TotalMicros)
		}
		for _, l := range lines(t, st, inv) {
			if l.ServicePeriodStart != nil {
				t.Errorf("other's February record billed as prior-period usage: %+v", l)
			}
		}
		verifyClean(t, svc, inv, 0)
	})
}

// After an upgrade from the release that invoiced only the previous
// month, the job catches up from the month of the first invoice ever made:
// a month it missed since then is invoiced, but the usage from before
// billing was used is not (no invoices issued, no notifications, for
// years of history at once).
func TestCatchUpStartsAtTheFirstInvoice(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		f := newFixture(t, st)
		acme, old := f.tenant("acme", USD), f.tenant("old", USD)
		dec, jan, feb := march.AddDate(0, -3, 0), march.AddDate(0, -2, 0), march.AddDate(0, -1, 0)
		f.store(usage(acme, "m", dec.Add(time.Hour), 10, 0, 10, 50),
			usage(old, "m", dec.Add(time.Hour), 10, 0, 10, 60),
			usage(acme, "m", jan.Add(time.Hour), 10, 0, 10, 100),
			usage(acme, "m", feb.Add(time.Hour), 10, 0, 10, 200),
			usage(acme, "m", march.Add(time.Hour), 10, 0, 10, 300))
		// The previous release invoiced January in February, then was down
		// through March.
		if _, err := jobAt(st, runAt).CreateInvoice(ctx, acme, jan, true); err != nil {
			t.Fatal(err)
		}
		var issued []string
		log := &logged{}
		svc := New(Config{Log: slog.New(log), Store: st, Now: func() time.Time { return runAt },
			OnIssued: func(_ context.Context, _ *ent.Tx, inv *ent.Invoice) error {
				issued = append(issued, inv.PeriodStart.UTC().Format("2006-01"))
				return nil
			}})
		if err := svc.IssueDue(ctx); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(log.periods, " "); got != "2026-02 2026-03" {
			t.Errorf("the job invoiced %q, want 2026-02 2026-03", got)
		}
		if got := strings.Join(issued, " "); got != "2026-02 2026-03" {
			t.Errorf("the job issued %q, want 2026-02 2026-03", got)
		}
		if n := st.Client().Invoice.Query().Where(invoice.PeriodStart(dec)).CountX(ctx); n != 0 {
			t.Errorf("%d invoices of December, before the first invoice, want none", n)
		}
	})
}

// A month the rollups count but whose usage records usage retention
// deleted before it was invoiced cannot be billed: the job says so once,
// naming the tenant and month, not every hour, and bills the rest.
func TestMonthWithoutRecordsLeftIsReportedOnce(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		f := newFixture(t, st)
		acme := f.tenant("acme", USD)
		jan, feb := march.AddDate(0, -2, 0), march.AddDate(0, -1, 0)
		f.store(usage(acme, "m", jan.Add(time.Hour), 10, 0, 10, 100),
			usage(acme, "m", feb.Add(time.Hour), 10, 0, 10, 200),
			usage(acme, "m", march.Add(time.Hour), 10, 0, 10, 300))
		if _, err := jobAt(st, runAt).CreateInvoice(ctx, acme, jan, true); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Client().UsageRecord.Delete().Where(usagerecord.CreatedAtGTE(feb), usagerecord.CreatedAtLT(march)).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		log := &logged{}
		svc := New(Config{Log: slog.New(log), Store: st, Now: func() time.Time { return runAt }})
		for range 3 {
			if err := svc.IssueDue(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := strings.Join(log.warnings, ", "), acme.String()+" 2026-02"; got != want {
			t.Errorf("warnings %q, want one: %q", got, want)
		}
		if got := strings.Join(log.periods, " "); got != "2026-03" {
			t.Errorf("the job invoiced %q, want 2026-03", got)
		}
	})
}

// Ingest of records of a closed month racing with the job that invoices
// it: each record ends up on exactly one invoice, March's or (late) April's.
func TestRecordsIngestedWhileTheirMonthIsInvoicedAreBilledOnce(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		f := newFixture(t, st)
		var tenants []uuid.UUID
		for i := range 6 {
			id := f.tenant(fmt.Sprint("t", i), USD)
			tenants = append(tenants, id)
			f.store(usage(id, "m", march.Add(time.Hour), 10, 0, 10, 1))
		}
		var (
			wg   sync.WaitGroup
			recs []*usagev1.UsageRecord
			cost = int64(1) * int64(len(tenants))
		)
		for b := range 12 {
			var batch []*usagev1.UsageRecord
			for i, id := range tenants {
				c := int64(10 + b*len(tenants) + i)
				batch = append(batch, usage(id, "m", march.Add(time.Duration(b+2)*time.Hour), 10, 0, 10, c))
				cost += c
			}
			recs = append(recs, batch...)
			wg.Go(func() {
				if _, err := f.ingest.Store(ctx, &usagev1.IngestRequest{Records: batch}); err != nil {
					t.Error(err)
				}
			})
		}
		for range 2 {
			wg.Go(func() {
				if err := jobAt(st, runAt).IssueDue(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if err := jobAt(st, mayRunAt).IssueDue(ctx); err != nil {
			t.Fatal(err)
		}

		byID := map[uuid.UUID]*ent.Invoice{}
		var total, requests int64
		for _, inv := range st.Client().Invoice.Query().AllX(ctx) {
			byID[inv.ID] = inv
			total += inv.TotalMicros
			requests += inv.Requests
			verifyClean(t, jobAt(st, mayRunAt), inv, 0)
		}
		if total != cost || requests != int64(len(recs)+len(tenants)) {
			t.Errorf("invoices bill %d micro-dollars for %d requests, records cost %d for %d", total, requests, cost, len(recs)+len(tenants))
		}
		late := 0
		for _, r := range recs {
			rec := st.Client().UsageRecord.Query().Where(usagerecord.RequestID(r.GetRequestId())).OnlyX(ctx)
			march := invoiceOf(t, st, rec.TenantID, march)
			switch {
			case !rec.Late && rec.LateInvoiceID == nil:
				// On March's invoice (checked by its verification).
			case rec.Late && rec.LateInvoiceID != nil && byID[*rec.LateInvoiceID] != nil &&
				byID[*rec.LateInvoiceID].PeriodStart.Equal(april) && *rec.LateInvoiceID != march.ID:
				late++
			default:
				t.Errorf("record %s: late %v, billed late by %v", rec.RequestID, rec.Late, rec.LateInvoiceID)
			}
		}
		t.Logf("%d of %d records arrived after their invoice", late, len(recs))
	})
}

// A late record deleted before it is billed (a usage retention purge, an
// erasure) leaves nothing to bill and nothing broken.
func TestPurgedLateRecordIsNotBilled(t *testing.T) {
	st := storetest.SQLite(t)
	ctx := context.Background()
	f := newFixture(t, st)
	acme := f.tenant("acme", USD)
	f.store(usage(acme, "m", march, 10, 0, 10, 5))
	if err := jobAt(st, runAt).IssueDue(ctx); err != nil {
		t.Fatal(err)
	}
	late := usage(acme, "m", march, 10, 0, 10, 7)
	f.store(late)
	if _, err := st.Client().UsageRecord.Delete().Where(usagerecord.RequestID(late.GetRequestId())).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := jobAt(st, mayRunAt).IssueDue(ctx); err != nil {
		t.Fatal(err)
	}
	if n := st.Client().Invoice.Query().CountX(ctx); n != 1 {
		t.Errorf("%d invoices, want March's only", n)
	}
	verifyClean(t, jobAt(st, mayRunAt), invoiceOf(t, st, acme, march), 0)
}

// BenchmarkIssueDueAfterThreeYears is the hourly run's cost once a
// deployment has three years of history, every month invoiced: the walk
// over 36 closed months (a rollup sum and an invoice list per month) and
// the partial index of late records.
func BenchmarkIssueDueAfterThreeYears(b *testing.B) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		b.Run(dialect, func(b *testing.B) {
			st := storetest.SQLite(b)
			if dialect == "postgres" {
				st = storetest.Postgres(b)
			}
			ctx := context.Background()
			ingest := usageingest.New(st, quiet())
			first := march.AddDate(-3, 0, 0)
			var recs []*usagev1.UsageRecord
			for i := range 10 {
				t, err := st.Client().Tenant.Create().SetSlug(fmt.Sprint("t", i)).SetName("t").Save(ctx)
				if err != nil {
					b.Fatal(err)
				}
				for m := first; m.Before(march); m = m.AddDate(0, 1, 0) {
					for d := range 28 {
						recs = append(recs, usage(t.ID, "m", m.AddDate(0, 0, d).Add(time.Hour), 10, 0, 10, 5))
					}
				}
			}
			for start := 0; start < len(recs); start += 500 {
				if _, err := ingest.Store(ctx, &usagev1.IngestRequest{Records: recs[start:min(start+500, len(recs))]}); err != nil {
					b.Fatal(err)
				}
			}
			svc := jobAt(st, march.Add(DefaultGrace+time.Hour))
			if err := svc.IssueDue(ctx); err != nil {
				b.Fatal(err)
			}
			if n := st.Client().Invoice.Query().CountX(ctx); n != 360 {
				b.Fatalf("%d invoices, want 360", n)
			}
			b.ResetTimer()
			for b.Loop() {
				if err := svc.IssueDue(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
