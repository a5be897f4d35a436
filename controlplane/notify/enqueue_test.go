package notify_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/controlplane/notify"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/notification"
)

// An event reaches the enabled endpoints of its tenant that want its type,
// and only if the transaction that enqueued it commits.
func TestEnqueueFollowsSubscriptionsAndTheTransaction(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		f := newFixture(t, s)
		ctx := t.Context()
		all, _ := f.webhook("https://hooks.example/all")
		budgets, _ := f.webhook("https://hooks.example/budgets", notify.TypeBudgetSoftLimit, notify.TypeBudgetExhausted)
		off, _ := f.webhook("https://hooks.example/off")
		if err := s.Client().NotificationEndpoint.UpdateOne(off).SetDisabled(true).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		other := newFixture(t, s) // another tenant's endpoint
		other.webhook("https://hooks.example/other")

		enqueue(t, s, f.tenant, notify.TypeBudgetExhausted)
		enqueue(t, s, f.tenant, notify.TypeKeyRevokedByOperator)
		rolledBack := errors.New("rolled back")
		err := s.InTx(ctx, func(tx *ent.Tx) error {
			if err := notify.Enqueue(ctx, tx, notify.Event{Type: notify.TypeInvoiceIssued, TenantID: f.tenant}); err != nil {
				return err
			}
			return rolledBack
		})
		if !errors.Is(err, rolledBack) {
			t.Fatal(err)
		}
		got := map[string][]string{}
		for _, n := range f.notifications() {
			got[n.EventType] = append(got[n.EventType], n.EndpointID.String())
			if n.Status != notification.StatusPending || n.TenantID != f.tenant {
				t.Errorf("new notification %+v", n)
			}
		}
		if e := got[notify.TypeBudgetExhausted]; len(e) != 2 || (e[0] != all.ID.String() && e[1] != all.ID.String()) || (e[0] != budgets.ID.String() && e[1] != budgets.ID.String()) {
			t.Errorf("budget.exhausted went to %v, want the catch-all and the budgets endpoint", e)
		}
		if e := got[notify.TypeKeyRevokedByOperator]; len(e) != 1 || e[0] != all.ID.String() {
			t.Errorf("security notice went to %v, want the catch-all endpoint only", e)
		}
		if len(got) != 2 {
			t.Errorf("notifications of types %v; the rolled-back one must not exist", got)
		}
		if err := s.InTx(ctx, func(tx *ent.Tx) error {
			return notify.Enqueue(ctx, tx, notify.Event{Type: "budget.nearly", TenantID: f.tenant})
		}); !errors.Is(err, notify.ErrUnknownType) {
			t.Errorf("unknown type: %v", err)
		}
	})
}

// A key is warned once per threshold (at the tightest it is within), and
// again when its expiry moves; revoked keys and far expiries are not.
func TestExpiringKeysAreWarnedOncePerThreshold(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		f := newFixture(t, s)
		ctx := t.Context()
		f.webhook("https://hooks.example/keys", notify.TypeKeyExpiring)
		now := f.clock.now()
		key := func(name string, expires time.Duration, revoked bool) *ent.APIKey {
			c := s.Client().APIKey.Create().SetTenantID(f.tenant).SetName(name).SetPrefix("tg-" + name).
				SetHash([]byte(name)).SetExpiresAt(now.Add(expires))
			if revoked {
				c.SetRevokedAt(now)
			}
			k, err := c.Save(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return k
		}
		weekish := key("weekish", 5*24*time.Hour, false)
		key("soon", 2*time.Hour, false)
		key("far", 30*24*time.Hour, false)
		key("revoked", time.Hour, true)
		warned := func() map[string]int {
			out := map[string]int{}
			for _, n := range f.notifications() {
				out[string(n.Data)]++
			}
			return out
		}
		scan := func(at time.Time) {
			t.Helper()
			if _, err := notify.WarnExpiringKeys(ctx, s, at, notify.DefaultExpiryThresholds); err != nil {
				t.Fatal(err)
			}
		}
		scan(now)
		scan(now.Add(time.Minute))
		if n := len(f.notifications()); n != 2 {
			t.Fatalf("%d warnings after two scans, want 2 (weekish at 7 days, soon at 1 day): %v", n, warned())
		}
		scan(now.Add(4*24*time.Hour + time.Hour)) // weekish is within a day now
		scan(now.Add(4*24*time.Hour + 2*time.Hour))
		if n := len(f.notifications()); n != 3 {
			t.Fatalf("%d warnings after crossing the 1-day threshold, want 3: %v", n, warned())
		}
		if err := s.Client().APIKey.UpdateOne(weekish).SetExpiresAt(now.Add(10 * 24 * time.Hour)).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		scan(now.Add(4 * 24 * time.Hour)) // 6 days left of the new expiry
		if n := len(f.notifications()); n != 4 {
			t.Fatalf("%d warnings after the expiry moved, want 4: %v", n, warned())
		}
		for _, n := range f.notifications() {
			if n.EventType != notify.TypeKeyExpiring || n.DedupeKey == nil {
				t.Errorf("warning %+v", n)
			}
		}
	})
}
