package notify_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/controlplane/billing"
	"github.com/tollgate-dev/tollgate/controlplane/notify"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/invoice"
)

// Issuing an invoice through billing's hook enqueues one invoice.issued
// event in the issuing transaction, with the invoice's totals.
func TestIssuedInvoiceIsNotified(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		f := newFixture(t, s)
		ctx := t.Context()
		f.webhook("https://hooks.example/billing", notify.TypeInvoiceIssued)
		start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
		inv, err := s.Client().Invoice.Create().SetTenantID(f.tenant).SetNumber("TG-202610-acme").
			SetPeriodStart(start).SetPeriodEnd(start.AddDate(0, 1, 0)).SetCurrency("EUR").SetExchangeRateMicros(920_000).
			SetTotalMicros(1_500_000).SetTotalCurrencyMicros(1_380_000).SetRequests(42).Save(ctx)
		if err != nil {
			t.Fatal(err)
		}
		svc := billing.New(billing.Config{Store: s, OnIssued: notify.InvoiceIssued})
		err = s.InTx(ctx, func(tx *ent.Tx) error {
			_, err := svc.Transition(ctx, tx, inv, invoice.StatusIssued, "operator")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		ns := f.notifications()
		if len(ns) != 1 || ns[0].EventType != notify.TypeInvoiceIssued {
			t.Fatalf("notifications %v, want one invoice.issued", ns)
		}
		body, err := notify.Body(ns[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`"number":"TG-202610-acme"`, `"currency":"EUR"`, `"total_currency_micros":1380000`, `"issued_at":"`} {
			if !strings.Contains(string(body), want) {
				t.Errorf("body lacks %s: %s", want, body)
			}
		}
	})
}
