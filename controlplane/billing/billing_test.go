package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/controlplane/usageingest"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/invoice"
	"github.com/tollgate-dev/tollgate/ent/invoiceline"
)

var (
	march    = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	april    = march.AddDate(0, 1, 0)
	midMarch = time.Date(2026, 3, 16, 12, 34, 56, 0, time.UTC)
	// After the grace period, on 2 April.
	runAt = april.Add(DefaultGrace + time.Hour)
)

type price struct{ in, cached, out int64 }

// chargeOf is what ext_proc charges (extproc/cost.go): one rounding per
// request, half up, of the token×price sum over a million.
func chargeOf(p price, in, cached, out int64) int64 {
	cached = min(cached, in)
	return ((in-cached)*p.in + cached*p.cached + out*p.out + 500_000) / 1_000_000
}

type fixture struct {
	t      *testing.T
	st     *store.Store
	ingest *usageingest.Server
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newFixture(t *testing.T, st *store.Store) *fixture {
	return &fixture{t: t, st: st, ingest: usageingest.New(st, slog.New(slog.DiscardHandler))}
}

func (f *fixture) tenant(slug, currency string) uuid.UUID {
	f.t.Helper()
	t, err := f.st.Client().Tenant.Create().SetSlug(slug).SetName(slug + " Inc.").SetBillingEmail("billing@" + slug + ".example").
		SetCurrency(currency).Save(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return t.ID
}

// model creates a platform model with prices taking effect at the given
// times.
func (f *fixture) model(name string, prices map[time.Time]price) {
	f.t.Helper()
	ctx := context.Background()
	m, err := f.st.Client().Model.Create().SetName(name).Save(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	for at, p := range prices {
		err := f.st.Client().ModelPrice.Create().SetModelID(m.ID).SetEffectiveFrom(at).
			SetInputMicrosPerMtok(p.in).SetCachedInputMicrosPerMtok(p.cached).SetOutputMicrosPerMtok(p.out).Exec(ctx)
		if err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) store(recs ...*usagev1.UsageRecord) {
	f.t.Helper()
	for start := 0; start < len(recs); start += 500 {
		resp, err := f.ingest.Store(context.Background(), &usagev1.IngestRequest{Records: recs[start:min(start+500, len(recs))]})
		if err != nil {
			f.t.Fatal(err)
		}
		if len(resp.GetRejected()) > 0 {
			f.t.Fatalf("rejected: %v", resp.GetRejected())
		}
	}
}

func usage(tenant uuid.UUID, model string, at time.Time, in, cached, out, cost int64) *usagev1.UsageRecord {
	return &usagev1.UsageRecord{RequestId: uuid.NewString(), TenantId: tenant.String(), Model: model, Provider: "p",
		InputTokens: in, CachedInputTokens: cached, OutputTokens: out, CostMicros: cost, StatusCode: 200, LatencyMs: 300,
		Time: timestamppb.New(at)}
}

func lines(t *testing.T, st *store.Store, inv *ent.Invoice) []*ent.InvoiceLine {
	t.Helper()
	ls, err := inv.QueryLines().Order(ent.Asc(invoiceline.FieldPosition)).All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// A month of synthetic usage, with a price change in the middle of it: the
// invoice equals the sum of its usage records to the micro-dollar, shows
// each half at its own price, and stays equal to a recomputation after a
// later price change.
func TestInvoiceEqualsItsRecordsAcrossAMidMonthPriceChange(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		f := newFixture(t, st)
		acme := f.tenant("acme", USD)
		before, after := price{2_500_000, 1_250_000, 10_000_000}, price{3_000_000, 300_000, 12_000_000}
		flat := price{150_000, 75_000, 600_000}
		f.model("gpt-x", map[time.Time]price{march.AddDate(0, -2, 0): before, midMarch: after})
		f.model("mini", map[time.Time]price{march.AddDate(-1, 0, 0): flat})

		rng := rand.New(rand.NewPCG(9, 9))
		var recs []*usagev1.UsageRecord
		var want int64
		type qty struct{ in, cached, out int64 }
		var gptBefore, gptAfter qty
		for i := range 3000 {
			at := march.Add(time.Duration(rng.Int64N(int64(april.Sub(march))))).Truncate(time.Microsecond)
			in, out := rng.Int64N(20_000), rng.Int64N(4_000)
			cached := rng.Int64N(in + 1)
			if i%50 == 0 {
				cached = in + 7 // providers sometimes report more cached than input
			}
			name, p := "mini", flat
			if i%3 != 0 {
				name, p = "gpt-x", before
				if !at.Before(midMarch) {
					p = after
				}
				q := &gptBefore
				if !at.Before(midMarch) {
					q = &gptAfter
				}
				q.in += in - min(cached, in)
				q.cached += min(cached, in)
				q.out += out
			}
			cost := chargeOf(p, in, cached, out)
			want += cost
			recs = append(recs, usage(acme, name, at, in, cached, out, cost))
		}
		// A model since deleted: its charge has no price to show but is owed.
		recs = append(recs, usage(acme, "retired", march.Add(time.Hour), 1000, 0, 10, 777))
		want += 777
		// Outside March: not on the invoice.
		recs = append(recs, usage(acme, "mini", march.Add(-time.Microsecond), 1000, 0, 0, 1_000_000),
			usage(acme, "mini", april, 1000, 0, 0, 1_000_000))
		f.store(recs...)

		svc := New(Config{Log: quiet(), Store: st, Now: func() time.Time { return runAt }})
		if err := svc.IssueDue(ctx); err != nil {
			t.Fatal(err)
		}
		// February's record gets an invoice of its own (catch-up).
		inv, err := st.Client().Invoice.Query().Where(invoice.PeriodStart(march)).Only(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if inv.TotalMicros != want || inv.TotalCurrencyMicros != want || inv.Requests != 3001 || inv.Status != invoice.StatusIssued ||
			!inv.PeriodStart.Equal(march) || !inv.PeriodEnd.Equal(april) || inv.Number != "TG-202603-acme" ||
			inv.BillingEmail != "billing@acme.example" || inv.BillingName != "acme Inc." || inv.IssuedAt == nil {
			t.Fatalf("invoice %+v, want total %d of 3001 requests, issued", inv, want)
		}
		var sum int64
		got := map[string]int64{}
		for _, l := range lines(t, st, inv) {
			sum += l.AmountMicros
			key := fmt.Sprintf("%s/%s", l.Model, l.Kind)
			if l.PriceEffectiveFrom != nil {
				key += "@" + l.PriceEffectiveFrom.UTC().Format(time.RFC3339)
			}
			got[key] = l.Quantity
			if l.Kind == invoiceline.KindAdjustment && l.Model != "retired" && (l.AmountMicros > 1500 || l.AmountMicros < -1500) {
				t.Errorf("%s adjusts %d micro-dollars: more than half a micro-dollar per request", l.Model, l.AmountMicros)
			}
			if l.Kind == invoiceline.KindAdjustment && l.Model == "retired" && l.AmountMicros != 777 {
				t.Errorf("the retired model's charge is adjusted by %d, want 777", l.AmountMicros)
			}
			if l.Kind != invoiceline.KindAdjustment && l.AmountMicros != (l.Quantity*l.UnitPriceMicrosPerMtok+500_000)/1_000_000 {
				t.Errorf("line %s: %d tokens at %d is not %d", key, l.Quantity, l.UnitPriceMicrosPerMtok, l.AmountMicros)
			}
		}
		if sum != want {
			t.Errorf("lines add up to %d, records to %d", sum, want)
		}
		b, a := "@"+march.AddDate(0, -2, 0).Format(time.RFC3339), "@"+midMarch.Format(time.RFC3339)
		for key, q := range map[string]int64{
			"gpt-x/input" + b: gptBefore.in, "gpt-x/cached_input" + b: gptBefore.cached, "gpt-x/output" + b: gptBefore.out,
			"gpt-x/input" + a: gptAfter.in, "gpt-x/cached_input" + a: gptAfter.cached, "gpt-x/output" + a: gptAfter.out,
		} {
			if got[key] != q {
				t.Errorf("%s: %d tokens, want %d", key, got[key], q)
			}
		}

		// A price change after the invoice: neither the invoice nor its
		// recomputation moves, and the job does not issue it again.
		f.st.Client().ModelPrice.Create().SetModelID(st.Client().Model.Query().FirstX(ctx).ID).SetEffectiveFrom(runAt.Add(time.Hour)).
			SetInputMicrosPerMtok(1).SetCachedInputMicrosPerMtok(1).SetOutputMicrosPerMtok(1).ExecX(ctx)
		if err := svc.IssueDue(ctx); err != nil {
			t.Fatal(err)
		}
		again, err := st.Client().Invoice.Query().Where(invoice.PeriodStart(march)).Only(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if again.TotalMicros != want || !again.UpdatedAt.Equal(inv.UpdatedAt) {
			t.Errorf("the invoice changed: %+v", again)
		}
		v, err := svc.Verify(ctx, again)
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Differences) != 0 || v.Recomputed.Total != want {
			t.Errorf("verification: %v", v.Differences)
		}
		// A record that arrives late waits for the next invoice: this one
		// still verifies, and says one record is pending.
		f.store(usage(acme, "mini", midMarch, 1000, 0, 0, 150))
		if v, err = svc.Verify(ctx, again); err != nil {
			t.Fatal(err)
		}
		if len(v.Differences) != 0 || v.PendingLate != 1 {
			t.Errorf("after a late record: differences %v, %d pending, want none and 1", v.Differences, v.PendingLate)
		}
	})
}

// Runners on several replicas, running the job at once, issue one invoice
// per tenant and month.
func TestConcurrentRunnersIssueOneInvoicePerTenantMonth(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		f := newFixture(t, st)
		var tenants []uuid.UUID
		for i := range 4 {
			id := f.tenant(fmt.Sprint("t", i), USD)
			tenants = append(tenants, id)
			f.store(usage(id, "m", march.Add(time.Duration(i)*time.Hour), 10, 0, 10, int64(100+i)))
		}
		var wg sync.WaitGroup
		for range 4 {
			svc := New(Config{Log: quiet(), Store: st, Now: func() time.Time { return runAt }})
			wg.Go(func() {
				if err := svc.IssueDue(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		for i, id := range tenants {
			n, err := st.Client().Invoice.Query().Where(invoice.TenantID(id)).Count(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Errorf("tenant %d has %d invoices for March, want 1", i, n)
			}
		}
		// Asked directly, the store says no.
		_, err := New(Config{Log: quiet(), Store: st}).CreateInvoice(ctx, tenants[0], march, true)
		if !errors.Is(err, ErrExists) {
			t.Errorf("a second invoice: %v, want ErrExists", err)
		}
		// And the unique index says no to what gets past the check.
		_, err = st.Client().Invoice.Create().SetTenantID(tenants[0]).SetNumber("x").SetPeriodStart(march).SetPeriodEnd(april).
			SetCurrency(USD).SetExchangeRateMicros(1_000_000).SetTotalMicros(0).SetTotalCurrencyMicros(0).SetRequests(0).Save(ctx)
		if !ent.IsConstraintError(err) {
			t.Errorf("inserting a second invoice for the month: %v, want a constraint error", err)
		}
	})
}

func TestInvoicesWaitForTheGraceAndSkipTenantsWithoutUsage(t *testing.T) {
	st := storetest.SQLite(t)
	ctx := context.Background()
	f := newFixture(t, st)
	acme := f.tenant("acme", USD)
	f.tenant("idle", USD)
	f.store(usage(acme, "m", march, 10, 0, 10, 5))
	svc := New(Config{Log: quiet(), Store: st, Now: func() time.Time { return april.Add(DefaultGrace - time.Second) }})
	if err := svc.IssueDue(ctx); err != nil {
		t.Fatal(err)
	}
	if n := st.Client().Invoice.Query().CountX(ctx); n != 0 {
		t.Fatalf("%d invoices within the grace period", n)
	}
	svc = New(Config{Log: quiet(), Store: st, Now: func() time.Time { return runAt }, Drafts: true})
	if err := svc.IssueDue(ctx); err != nil {
		t.Fatal(err)
	}
	invs := st.Client().Invoice.Query().AllX(ctx)
	if len(invs) != 1 || invs[0].TenantID != acme || invs[0].Status != invoice.StatusDraft || invs[0].IssuedAt != nil {
		t.Fatalf("invoices %v, want acme's draft only", invs)
	}
}

// Amounts are converted line by line at the rate configured when the
// invoice was made, which it keeps; without a rate there is no invoice.
func TestInvoiceInTheTenantsCurrency(t *testing.T) {
	st := storetest.SQLite(t)
	ctx := context.Background()
	f := newFixture(t, st)
	f.model("m", map[time.Time]price{march.AddDate(0, -1, 0): {1_000_000, 500_000, 3_000_000}})
	euro := f.tenant("euro", "EUR")
	f.store(usage(euro, "m", march, 1_234_567, 0, 0, 1_234_567), usage(euro, "m", march, 0, 0, 333_333, 999_999))

	err := New(Config{Log: quiet(), Store: st, Now: func() time.Time { return runAt }}).IssueDue(ctx)
	if err == nil || st.Client().Invoice.Query().CountX(ctx) != 0 {
		t.Fatalf("without an EUR rate: %v, %d invoices", err, st.Client().Invoice.Query().CountX(ctx))
	}
	code, rate, err := ParseRate("eur=0.923456")
	if err != nil || code != "EUR" || rate != 923_456 {
		t.Fatalf("ParseRate = %s %d %v", code, rate, err)
	}
	svc := New(Config{Log: quiet(), Store: st, Now: func() time.Time { return runAt }, Rates: Rates{code: rate}})
	if err := svc.IssueDue(ctx); err != nil {
		t.Fatal(err)
	}
	inv := st.Client().Invoice.Query().OnlyX(ctx)
	var cur int64
	for _, l := range lines(t, st, inv) {
		if l.AmountCurrencyMicros != Convert(l.AmountMicros, rate) {
			t.Errorf("line %v converted to %d", l, l.AmountCurrencyMicros)
		}
		cur += l.AmountCurrencyMicros
	}
	// 1.234567 $ → 1.140068 € (1.1400683…), 0.999999 $ → 0.923455 €.
	if inv.Currency != "EUR" || inv.ExchangeRateMicros != rate || inv.TotalMicros != 2_234_566 || inv.TotalCurrencyMicros != cur || cur != 1_140_068+923_455 {
		t.Errorf("invoice %s %d at %d: total %d $µ, %d €µ (lines %d)", inv.Currency, inv.TotalMicros, inv.ExchangeRateMicros, inv.TotalMicros, inv.TotalCurrencyMicros, cur)
	}
}

func TestStatusTransitions(t *testing.T) {
	st := storetest.SQLite(t)
	ctx := context.Background()
	f := newFixture(t, st)
	acme := f.tenant("acme", USD)
	f.store(usage(acme, "m", march, 10, 0, 10, 5))
	var hooked []uuid.UUID
	failHook := false
	svc := New(Config{Log: quiet(), Store: st, Now: func() time.Time { return runAt }, OnIssued: func(ctx context.Context, tx *ent.Tx, inv *ent.Invoice) error {
		if failHook {
			return errors.New("hook failed")
		}
		if inv.Status != invoice.StatusIssued {
			t.Errorf("hook sees status %s", inv.Status)
		}
		hooked = append(hooked, inv.ID)
		return nil
	}})
	inv, err := svc.CreateInvoice(ctx, acme, march, false)
	if err != nil {
		t.Fatal(err)
	}
	move := func(inv *ent.Invoice, to invoice.Status) (*ent.Invoice, error) {
		var out *ent.Invoice
		err := st.InTx(ctx, func(tx *ent.Tx) error {
			var err error
			out, err = svc.Transition(ctx, tx, inv, to, "operator")
			return err
		})
		return out, err
	}
	for _, to := range []invoice.Status{invoice.StatusPaid, invoice.StatusDraft} {
		if _, err := move(inv, to); !errors.Is(err, ErrTransition) {
			t.Errorf("draft → %s: %v, want ErrTransition", to, err)
		}
	}
	failHook = true
	if _, err := move(inv, invoice.StatusIssued); err == nil || st.Client().Invoice.GetX(ctx, inv.ID).Status != invoice.StatusDraft {
		t.Fatalf("a failing hook must undo the issue: %v", err)
	}
	failHook = false
	issued, err := move(inv, invoice.StatusIssued)
	if err != nil || len(hooked) != 1 || hooked[0] != inv.ID {
		t.Fatalf("issue: %v, hook saw %v", err, hooked)
	}
	// The stale copy (still a draft) cannot be issued or voided again.
	if _, err := move(inv, invoice.StatusVoid); !errors.Is(err, ErrTransition) {
		t.Errorf("voiding from a stale draft: %v", err)
	}
	paid, err := move(issued, invoice.StatusPaid)
	if err != nil || paid.PaidAt == nil {
		t.Fatalf("pay: %v", err)
	}
	for _, to := range []invoice.Status{invoice.StatusVoid, invoice.StatusIssued, invoice.StatusDraft} {
		if _, err := move(paid, to); !errors.Is(err, ErrTransition) {
			t.Errorf("paid → %s: %v, want ErrTransition", to, err)
		}
	}
	if len(hooked) != 1 {
		t.Errorf("hook ran %d times", len(hooked))
	}
	actions := st.Client().AuditEvent.Query().AllX(ctx)
	var names []string
	for _, a := range actions {
		names = append(names, a.Action)
	}
	slices.Sort(names)
	if fmt.Sprint(names) != "[invoice.create invoice.issue invoice.pay]" {
		t.Errorf("audit %v", names)
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{"EUR=0.92": 920_000, "JPY=151.25": 151_250_000, "gbp=1": 1_000_000} {
		if _, got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"EUR", "EURO=1", "EUR=0", "EUR=-1", "EUR=0.1234567", "EUR=abc"} {
		if _, _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
}

func TestConvertRoundsHalfAwayFromZero(t *testing.T) {
	for _, tt := range []struct{ micros, rate, want int64 }{
		{1_000_000, 920_000, 920_000}, {1, 500_000, 1}, {-1, 500_000, -1}, {3, 500_000, 2}, {1, 499_999, 0},
		// $9 billion in yen: the product passes int64, the result does not.
		{9_000_000_000_000_000, 1_000, 9_000_000_000_000},
	} {
		if got := Convert(tt.micros, tt.rate); got != tt.want {
			t.Errorf("Convert(%d, %d) = %d, want %d", tt.micros, tt.rate, got, tt.want)
		}
	}
	if got := perMillion(1<<40, 60_000_000); got != (1<<40)*60 {
		t.Errorf("perMillion overflowed: %d", got)
	}
}

func TestDecimal(t *testing.T) {
	for m, want := range map[int64]string{0: "0.000000", 1500: "0.001500", -2: "-0.000002", 12_345_678: "12.345678",
		-9223372036854775808: "-9223372036854.775808"} {
		if got := Decimal(m); got != want {
			t.Errorf("Decimal(%d) = %q, want %q", m, got, want)
		}
	}
}
