package quotaauthority_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	quotav1 "github.com/tollgate-dev/tollgate/api/tollgate/quota/v1"
	"github.com/tollgate-dev/tollgate/controlplane/notify"
	"github.com/tollgate-dev/tollgate/controlplane/policy"
	"github.com/tollgate-dev/tollgate/controlplane/quotaauthority"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent/auditevent"
	"github.com/tollgate-dev/tollgate/ent/notification"
	"github.com/tollgate-dev/tollgate/ent/notificationendpoint"
)

// When settled spend reaches a budget's soft limit, the authority writes one
// audit event for the window and flags the tenant, whichever replica's
// report crosses it.
func TestSoftLimitIsReportedOncePerWindow(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		c := newClock(day.Add(time.Hour))
		a := quotaauthority.New(s, quotaauthority.Options{Now: c.now})
		tenant := uuid.New()
		if err := s.Client().Tenant.Create().SetID(tenant).SetName("T").SetSlug("soft-" + tenant.String()[:8]).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		hard, soft := int64(1_000), int64(100)
		spec := policy.Spec{Budgets: []policy.Budget{{Period: policy.PeriodDay, HardLimitMicros: &hard, SoftLimitMicros: &soft}}}
		if err := s.Client().GatewayPolicy.Create().SetTenantID(tenant).SetSpec(spec).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		events := func() int {
			n, err := s.Client().AuditEvent.Query().Where(auditevent.Action("budget.soft_limit_reached"), auditevent.TenantID(tenant)).Count(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		// Two replicas' leases; the first stays under the soft limit.
		l1, l2 := uuid.NewString(), uuid.NewString()
		report(t, a, &quotav1.LeaseRequest{LeaseId: l1, Seq: 1, Counter: key(tenant), Settled: 60, Want: 100, Need: 1})
		if events() != 0 {
			t.Fatal("reported below the soft limit")
		}
		report(t, a, &quotav1.LeaseRequest{LeaseId: l2, Seq: 1, Counter: key(tenant), Settled: 50, Want: 100, Need: 1})
		if events() != 1 {
			t.Fatalf("%d soft-limit events after crossing it, want 1", events())
		}
		tn, err := s.Client().Tenant.Get(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		if tn.BudgetAlertAt == nil || tn.BudgetAlert == "" {
			t.Errorf("the tenant is not flagged: %+v", tn)
		}
		report(t, a, &quotav1.LeaseRequest{LeaseId: l1, Seq: 2, Counter: key(tenant), Settled: 300, Want: 100, Need: 1})
		if events() != 1 {
			t.Errorf("%d events after more spend in the same window, want still 1", events())
		}
	})
}

// A budget is exhausted when what is left of its hard limit cannot admit
// the request waiting for a report (or nothing is left): the authority
// writes one audit event and one notification per endpoint for the window,
// in the report's transaction, and no more for later refusals.
func TestExhaustionIsReportedOncePerWindow(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a := quotaauthority.New(s, quotaauthority.Options{Now: newClock(day.Add(time.Hour)).now})
		tenant := tenantWithBudget(t, s, 1_000)
		if err := s.Client().NotificationEndpoint.Create().SetTenantID(tenant).SetName("ops").
			SetKind(notificationendpoint.KindEmail).SetEmailRecipients([]string{"ops@example.com"}).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		count := func() (events, notes int) {
			events, err := s.Client().AuditEvent.Query().Where(auditevent.Action("budget.exhausted"), auditevent.TenantID(tenant)).Count(ctx)
			if err != nil {
				t.Fatal(err)
			}
			notes, err = s.Client().Notification.Query().Where(notification.EventType(notify.TypeBudgetExhausted)).Count(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return events, notes
		}
		l1, l2 := uuid.NewString(), uuid.NewString()
		report(t, a, &quotav1.LeaseRequest{LeaseId: l1, Seq: 1, Counter: key(tenant), Settled: 900, Want: 50, Need: 50})
		if e, n := count(); e != 0 || n != 0 {
			t.Fatalf("%d events, %d notifications with 100 left for a request of 50", e, n)
		}
		// 50 left; a request needing 80 is refused: exhausted.
		report(t, a, &quotav1.LeaseRequest{LeaseId: l1, Seq: 2, Counter: key(tenant), Settled: 950, Want: 80, Need: 80})
		report(t, a, &quotav1.LeaseRequest{LeaseId: l2, Seq: 1, Counter: key(tenant), Settled: 60, Want: 80, Need: 80})
		if e, n := count(); e != 1 || n != 1 {
			t.Fatalf("%d events, %d notifications after the budget ran out, want 1 and 1", e, n)
		}
	})
}
