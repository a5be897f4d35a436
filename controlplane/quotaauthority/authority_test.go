package quotaauthority_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	quotav1 "github.com/tollgate-dev/tollgate/api/tollgate/quota/v1"
	"github.com/tollgate-dev/tollgate/controlplane/policy"
	"github.com/tollgate-dev/tollgate/controlplane/quotaauthority"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

var day = time.Date(2028, 2, 29, 0, 0, 0, 0, time.UTC)

// clock is a settable clock for the authority.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock    { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

// tenantWithBudget creates a tenant whose daily budget is limit µ$.
func tenantWithBudget(t *testing.T, s *store.Store, limit int64) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	id := uuid.New()
	if err := s.Client().Tenant.Create().SetID(id).SetName("T").SetSlug("t" + id.String()[:8]).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	spec := policy.Spec{Budgets: []policy.Budget{{Period: policy.PeriodDay, HardLimitMicros: &limit}}}
	if err := s.Client().GatewayPolicy.Create().SetTenantID(id).SetSpec(spec).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	return id
}

func key(tenant uuid.UUID) *quotav1.CounterKey {
	return &quotav1.CounterKey{SubjectKind: quotav1.SubjectKind_SUBJECT_KIND_TENANT, SubjectId: tenant.String(),
		Meter: quotav1.Meter_METER_DAY_BUDGET, WindowStart: timestamppb.New(day)}
}

func report(t *testing.T, a *quotaauthority.Authority, req *quotav1.LeaseRequest) *quotav1.LeaseResponse {
	t.Helper()
	resp, err := a.Report(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestConcurrentLeasesNeverGrantBeyondTheLimit(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		const limit = 10_000
		c := newClock(day.Add(time.Hour))
		a := quotaauthority.New(s, quotaauthority.Options{Now: c.now})
		tenant := tenantWithBudget(t, s, limit)
		// Twelve replicas each ask, again and again, for leases of 3,000
		// (need 1,000) and spend every unit they get.
		var wg sync.WaitGroup
		var granted atomic.Int64
		for r := range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lease := uuid.NewString()
				var settled, holding int64
				for seq := uint64(1); seq <= 6; seq++ {
					// Spend everything held, then ask for more.
					settled += holding
					resp, err := a.Report(context.Background(), &quotav1.LeaseRequest{LeaseId: lease, Seq: seq, Replica: string(rune('a' + r)),
						Counter: key(tenant), Settled: settled, Want: 3000, Need: 1000})
					if err != nil {
						t.Error(err)
						return
					}
					holding = resp.GetHolding()
					granted.Add(holding)
				}
				settled += holding
				if _, err := a.Report(context.Background(), &quotav1.LeaseRequest{LeaseId: lease, Seq: 7, Counter: key(tenant), Settled: settled, Release: true}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if got := granted.Load(); got > limit {
			t.Fatalf("granted %d units in total under a limit of %d", got, limit)
		}
		// Everything was spent and released: the counter holds nothing and
		// has settled what was granted, and the budget is exhausted.
		resp := report(t, a, &quotav1.LeaseRequest{LeaseId: uuid.NewString(), Seq: 1, Counter: key(tenant), Want: 1, Need: 1})
		if resp.GetCounterSettled() != granted.Load() || (resp.GetHolding() != 0) != (granted.Load() < limit) {
			t.Fatalf("counter settled %d (granted %d), new lease holds %d", resp.GetCounterSettled(), granted.Load(), resp.GetHolding())
		}
		if granted.Load() < limit-3000 {
			t.Errorf("granted only %d of %d: leases left too much unused", granted.Load(), limit)
		}
	})
}

func TestRepeatedReportsChangeNothing(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		c := newClock(day.Add(time.Hour))
		a := quotaauthority.New(s, quotaauthority.Options{Now: c.now})
		tenant := tenantWithBudget(t, s, 10_000)
		lease := uuid.NewString()
		first := report(t, a, &quotav1.LeaseRequest{LeaseId: lease, Seq: 1, Counter: key(tenant), Want: 2000, Need: 100})
		again := report(t, a, &quotav1.LeaseRequest{LeaseId: lease, Seq: 1, Counter: key(tenant), Want: 2000, Need: 100})
		if first.GetHolding() != 2000 || again.GetHolding() != 2000 || again.GetCounterHeld() != 2000 {
			t.Fatalf("first %v, again %v", first, again)
		}
		r2 := report(t, a, &quotav1.LeaseRequest{LeaseId: lease, Seq: 2, Counter: key(tenant), Settled: 500, Want: 2000, Need: 100})
		// seq 2 applied twice, and a stale seq 1 arriving late.
		r2b := report(t, a, &quotav1.LeaseRequest{LeaseId: lease, Seq: 2, Counter: key(tenant), Settled: 500, Want: 2000, Need: 100})
		stale := report(t, a, &quotav1.LeaseRequest{LeaseId: lease, Seq: 1, Counter: key(tenant), Want: 9000, Need: 100})
		for _, r := range []*quotav1.LeaseResponse{r2, r2b, stale} {
			if r.GetCounterSettled() != 500 || r.GetHolding() != 2000 || r.GetSeq() != 2 {
				t.Fatalf("after seq 2: %v", r)
			}
		}
	})
}

func TestExpiredLeasesAreReclaimed(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		c := newClock(day.Add(time.Hour))
		a := quotaauthority.New(s, quotaauthority.Options{Now: c.now, TTL: 10 * time.Second})
		tenant := tenantWithBudget(t, s, 10_000)
		dead := uuid.NewString()
		// A replica takes 8,000, has 3,000 in flight, then dies.
		report(t, a, &quotav1.LeaseRequest{LeaseId: dead, Seq: 1, Counter: key(tenant), Want: 8000, Need: 1000})
		report(t, a, &quotav1.LeaseRequest{LeaseId: dead, Seq: 2, Counter: key(tenant), Settled: 1000, InFlight: 3000, Want: 4000, Need: 1})
		other := uuid.NewString()
		if r := report(t, a, &quotav1.LeaseRequest{LeaseId: other, Seq: 1, Counter: key(tenant), Want: 5000, Need: 5000}); r.GetHolding() != 0 {
			t.Fatalf("granted %d while the dead lease holds 7,000 of 9,000 left", r.GetHolding())
		}
		c.add(11 * time.Second)
		// Its in-flight 3,000 is charged (those requests may have spent it);
		// its free 4,000 is back.
		// (The other lease, never renewed either, has expired too.)
		r := report(t, a, &quotav1.LeaseRequest{LeaseId: uuid.NewString(), Seq: 1, Counter: key(tenant), Want: 6000, Need: 6000})
		if r.GetHolding() != 6000 || r.GetCounterSettled() != 4000 {
			t.Fatalf("after expiry: holding %d, counter settled %d; want 6000 and 4000", r.GetHolding(), r.GetCounterSettled())
		}
		late := report(t, a, &quotav1.LeaseRequest{LeaseId: dead, Seq: 3, Counter: key(tenant), Settled: 5000, Want: 1000, Need: 1})
		if late.GetStatus() != quotav1.LeaseStatus_LEASE_STATUS_EXPIRED || late.GetHolding() != 0 {
			t.Fatalf("a report on an expired lease: %v", late)
		}
	})
}

func TestCountersSurviveARestart(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		c := newClock(day.Add(time.Hour))
		a := quotaauthority.New(s, quotaauthority.Options{Now: c.now})
		tenant := tenantWithBudget(t, s, 10_000)
		lease := uuid.NewString()
		report(t, a, &quotav1.LeaseRequest{LeaseId: lease, Seq: 1, Counter: key(tenant), Want: 4000, Need: 1})
		report(t, a, &quotav1.LeaseRequest{LeaseId: lease, Seq: 2, Counter: key(tenant), Settled: 3000, InFlight: 1000, Want: 2000, Need: 1})
		// A new authority on the same store: the lease and the counter carry on.
		b := quotaauthority.New(s, quotaauthority.Options{Now: c.now})
		r := report(t, b, &quotav1.LeaseRequest{LeaseId: lease, Seq: 2, Counter: key(tenant), Settled: 3000, InFlight: 1000, Want: 2000, Need: 1})
		if r.GetCounterSettled() != 3000 || r.GetHolding() != 3000 || r.GetCounterHeld() != 3000 {
			t.Fatalf("after a restart: %v", r)
		}
		r = report(t, b, &quotav1.LeaseRequest{LeaseId: uuid.NewString(), Seq: 1, Counter: key(tenant), Want: 10_000, Need: 4000})
		if r.GetHolding() != 4000 {
			t.Fatalf("a new lease after the restart got %d; 4,000 are left", r.GetHolding())
		}
	})
}

func TestInvalidReports(t *testing.T) {
	s := storetest.SQLite(t)
	a := quotaauthority.New(s, quotaauthority.Options{Now: newClock(day).now})
	tenant := uuid.New()
	bad := []*quotav1.LeaseRequest{
		{LeaseId: "x", Seq: 1, Counter: key(tenant)},
		{LeaseId: uuid.NewString(), Seq: 0, Counter: key(tenant)},
		{LeaseId: uuid.NewString(), Seq: 1, Counter: key(tenant), InFlight: -1},
		{LeaseId: uuid.NewString(), Seq: 1, Counter: &quotav1.CounterKey{SubjectKind: quotav1.SubjectKind_SUBJECT_KIND_TENANT, SubjectId: tenant.String(),
			Meter: quotav1.Meter_METER_DAY_BUDGET, WindowStart: timestamppb.New(day.Add(time.Hour))}},
	}
	for _, r := range bad {
		if resp := report(t, a, r); resp.GetStatus() != quotav1.LeaseStatus_LEASE_STATUS_INVALID || resp.GetMessage() == "" {
			t.Errorf("%v: %v", r, resp)
		}
	}
}

func TestLimitsComeFromTheSubjectsPolicy(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		now := time.Date(2028, 2, 29, 13, 7, 0, 0, time.UTC)
		a := quotaauthority.New(s, quotaauthority.Options{Now: newClock(now.Add(20 * time.Second)).now})
		tenantID := tenantWithBudget(t, s, 10_000)
		keyID := uuid.New()
		if err := s.Client().APIKey.Create().SetID(keyID).SetTenantID(tenantID).SetName("k").SetPrefix("tg_k").SetHash([]byte("h")).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		rpm := int64(5)
		if err := s.Client().GatewayPolicy.Create().SetAPIKeyID(keyID).SetSpec(policy.Spec{RequestsPerMinute: &rpm}).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		minute := &quotav1.CounterKey{SubjectKind: quotav1.SubjectKind_SUBJECT_KIND_KEY, SubjectId: keyID.String(),
			Meter: quotav1.Meter_METER_REQUESTS_PER_MINUTE, WindowStart: timestamppb.New(now)}
		// Half of what is left (other replicas may come), at least what is needed.
		r := report(t, a, &quotav1.LeaseRequest{LeaseId: uuid.NewString(), Seq: 1, Counter: minute, Want: 100, Need: 1})
		if r.GetHolding() != 2 || r.GetLimit() != 5 {
			t.Fatalf("a key's requests per minute: %v", r)
		}
		r = report(t, a, &quotav1.LeaseRequest{LeaseId: uuid.NewString(), Seq: 1, Counter: minute, Want: 100, Need: 3})
		if r.GetHolding() != 3 || r.GetCounterHeld() != 5 {
			t.Fatalf("a key's requests per minute: %v", r)
		}
		// The key has no budget: nothing limits its spend.
		day := &quotav1.CounterKey{SubjectKind: quotav1.SubjectKind_SUBJECT_KIND_KEY, SubjectId: keyID.String(),
			Meter: quotav1.Meter_METER_DAY_BUDGET, WindowStart: timestamppb.New(now.Truncate(24 * time.Hour))}
		r = report(t, a, &quotav1.LeaseRequest{LeaseId: uuid.NewString(), Seq: 1, Counter: day, Want: 1 << 40, Need: 1})
		if r.GetHolding() != 1<<40 || r.Limit != nil {
			t.Fatalf("an unlimited budget: %v", r)
		}
		// Releasing answers RELEASED and gives everything back; a lease
		// cannot move to another counter.
		lease := uuid.NewString()
		report(t, a, &quotav1.LeaseRequest{LeaseId: lease, Seq: 1, Counter: key(tenantID), Want: 3000, Need: 1})
		if r := report(t, a, &quotav1.LeaseRequest{LeaseId: lease, Seq: 2, Counter: minute, Want: 1, Need: 1}); r.GetStatus() != quotav1.LeaseStatus_LEASE_STATUS_INVALID {
			t.Fatalf("a lease reported on another counter: %v", r)
		}
		r = report(t, a, &quotav1.LeaseRequest{LeaseId: lease, Seq: 2, Counter: key(tenantID), Settled: 1000, InFlight: 500, Release: true})
		if r.GetStatus() != quotav1.LeaseStatus_LEASE_STATUS_RELEASED || r.GetCounterHeld() != 0 || r.GetCounterSettled() != 1500 {
			t.Fatalf("a release: %v", r)
		}
	})
}

func TestPruneDeletesOnlyPastWindows(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		now := time.Date(2028, 6, 15, 12, 0, 0, 0, time.UTC)
		c := newClock(now)
		a := quotaauthority.New(s, quotaauthority.Options{Now: c.now})
		subject := uuid.NewString()
		at := func(m quotav1.Meter, w time.Time) *quotav1.CounterKey {
			return &quotav1.CounterKey{SubjectKind: quotav1.SubjectKind_SUBJECT_KIND_KEY, SubjectId: subject, Meter: m, WindowStart: timestamppb.New(w)}
		}
		keep := []*quotav1.CounterKey{
			at(quotav1.Meter_METER_REQUESTS_PER_MINUTE, now.Truncate(time.Minute)),
			at(quotav1.Meter_METER_DAY_BUDGET, now.Truncate(24*time.Hour)),
			at(quotav1.Meter_METER_DAY_BUDGET, now.Truncate(24*time.Hour).AddDate(0, 0, -30)),
			at(quotav1.Meter_METER_TOTAL_BUDGET, time.Unix(0, 0)),
		}
		drop := []*quotav1.CounterKey{
			at(quotav1.Meter_METER_REQUESTS_PER_MINUTE, now.Truncate(time.Minute).Add(-2*time.Hour)),
			at(quotav1.Meter_METER_DAY_BUDGET, now.Truncate(24*time.Hour).AddDate(0, 0, -70)),
			at(quotav1.Meter_METER_MONTH_BUDGET, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)),
		}
		for _, k := range append(append([]*quotav1.CounterKey{}, keep...), drop...) {
			report(t, a, &quotav1.LeaseRequest{LeaseId: uuid.NewString(), Seq: 1, Counter: k, Want: 10, Need: 1})
		}
		n, err := a.Prune(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		left, _ := s.Client().QuotaCounter.Query().Count(ctx)
		leases, _ := s.Client().QuotaLease.Query().Count(ctx)
		if n != 6 || left != len(keep) || leases != len(keep) {
			t.Fatalf("pruned %d rows; %d counters and %d leases left, want %d of each", n, left, leases, len(keep))
		}
	})
}
