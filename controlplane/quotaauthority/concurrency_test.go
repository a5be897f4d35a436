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

// tenantWithConcurrency creates a tenant that may run limit requests at once.
func tenantWithConcurrency(t *testing.T, s *store.Store, limit int64) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	id := uuid.New()
	if err := s.Client().Tenant.Create().SetID(id).SetName("T").SetSlug("t" + id.String()[:8]).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Client().GatewayPolicy.Create().SetTenantID(id).SetSpec(policy.Spec{ConcurrentRequests: &limit}).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	return id
}

func concurrencyKey(tenant uuid.UUID) *quotav1.CounterKey {
	return &quotav1.CounterKey{SubjectKind: quotav1.SubjectKind_SUBJECT_KIND_TENANT, SubjectId: tenant.String(),
		Meter: quotav1.Meter_METER_CONCURRENT_REQUESTS, WindowStart: timestamppb.New(time.Unix(0, 0))}
}

func TestConcurrencyLeasesBoundRequestsInFlightAcrossReplicas(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		const limit = 4
		c := newClock(day.Add(time.Hour))
		a := quotaauthority.New(s, quotaauthority.Options{Now: c.now})
		tenant := tenantWithConcurrency(t, s, limit)
		// Five replicas each start as many requests as their lease holds,
		// end some of them (the units stay in the lease, free), and report
		// again, over and over. Requests in flight across the replicas
		// never exceed the limit.
		var wg sync.WaitGroup
		var inFlight, most, started atomic.Int64
		for r := range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lease := uuid.NewString()
				var mine int64
				for seq := uint64(1); seq <= 8; seq++ {
					resp, err := a.Report(context.Background(), &quotav1.LeaseRequest{LeaseId: lease, Seq: seq, Replica: string(rune('a' + r)),
						Counter: concurrencyKey(tenant), InFlight: mine, Want: 2, Need: 1})
					if err != nil {
						t.Error(err)
						return
					}
					if resp.GetSettled() != 0 || resp.GetHolding() < mine {
						t.Errorf("lease %s: %v with %d in flight", lease, resp, mine)
						return
					}
					// Start a request for every free unit.
					if n := resp.GetHolding() - mine; n > 0 {
						mine += n
						started.Add(n)
						now := inFlight.Add(n)
						for m := most.Load(); now > m; m = most.Load() {
							if most.CompareAndSwap(m, now) {
								break
							}
						}
					}
					// Half of them end; their units are free in the lease again.
					ended := (mine + 1) / 2
					inFlight.Add(-ended)
					mine -= ended
				}
				inFlight.Add(-mine)
				// Released with requests in flight (a replica stopping):
				// they are released, not charged.
				resp, err := a.Report(context.Background(), &quotav1.LeaseRequest{LeaseId: lease, Seq: 9, Counter: concurrencyKey(tenant), InFlight: mine, Release: true})
				if err != nil {
					t.Error(err)
				} else if resp.GetStatus() != quotav1.LeaseStatus_LEASE_STATUS_RELEASED {
					t.Errorf("release: %v", resp)
				}
			}()
		}
		wg.Wait()
		if most.Load() > limit {
			t.Fatalf("%d requests in flight across replicas under a limit of %d", most.Load(), limit)
		}
		if started.Load() < limit {
			t.Fatalf("only %d requests started", started.Load())
		}
		// Everything released: nothing settled, nothing held, the whole
		// limit free for a new lease.
		resp := report(t, a, &quotav1.LeaseRequest{LeaseId: uuid.NewString(), Seq: 1, Counter: concurrencyKey(tenant), Want: limit, Need: limit})
		if resp.GetHolding() != limit || resp.GetCounterSettled() != 0 || resp.GetCounterHeld() != limit || resp.GetLimit() != limit {
			t.Fatalf("after every lease was released: %v", resp)
		}
	})
}

func TestAnExpiredConcurrencyLeaseReleasesItsSlots(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		c := newClock(day.Add(time.Hour))
		a := quotaauthority.New(s, quotaauthority.Options{Now: c.now, TTL: 10 * time.Second})
		tenant := tenantWithConcurrency(t, s, 4)
		dead := uuid.NewString()
		// A replica takes 4 slots, runs 3 requests, then dies.
		if r := report(t, a, &quotav1.LeaseRequest{LeaseId: dead, Seq: 1, Counter: concurrencyKey(tenant), Want: 4, Need: 4}); r.GetHolding() != 4 {
			t.Fatalf("first lease: %v", r)
		}
		report(t, a, &quotav1.LeaseRequest{LeaseId: dead, Seq: 2, Counter: concurrencyKey(tenant), InFlight: 3, Want: 1, Need: 1})
		if r := report(t, a, &quotav1.LeaseRequest{LeaseId: uuid.NewString(), Seq: 1, Counter: concurrencyKey(tenant), Want: 1, Need: 1}); r.GetHolding() != 0 {
			t.Fatalf("granted %d while the live lease holds every slot", r.GetHolding())
		}
		c.add(11 * time.Second)
		// Its 3 requests in flight are released, not charged: every slot is
		// free again.
		r := report(t, a, &quotav1.LeaseRequest{LeaseId: uuid.NewString(), Seq: 1, Counter: concurrencyKey(tenant), Want: 4, Need: 4})
		if r.GetHolding() != 4 || r.GetCounterSettled() != 0 {
			t.Fatalf("after expiry: holding %d, counter settled %d; want 4 and 0", r.GetHolding(), r.GetCounterSettled())
		}
		late := report(t, a, &quotav1.LeaseRequest{LeaseId: dead, Seq: 3, Counter: concurrencyKey(tenant), InFlight: 3, Want: 1, Need: 1})
		if late.GetStatus() != quotav1.LeaseStatus_LEASE_STATUS_EXPIRED || late.GetHolding() != 0 || late.GetSettled() != 0 {
			t.Fatalf("a report on an expired lease: %v", late)
		}
		// A concurrency counter has one window, the Unix epoch.
		bad := &quotav1.CounterKey{SubjectKind: quotav1.SubjectKind_SUBJECT_KIND_TENANT, SubjectId: tenant.String(),
			Meter: quotav1.Meter_METER_CONCURRENT_REQUESTS, WindowStart: timestamppb.New(day)}
		if r := report(t, a, &quotav1.LeaseRequest{LeaseId: uuid.NewString(), Seq: 1, Counter: bad, Want: 1, Need: 1}); r.GetStatus() != quotav1.LeaseStatus_LEASE_STATUS_INVALID {
			t.Fatalf("a concurrency counter in a day's window: %v", r)
		}
	})
}
