package quota

import (
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
)

func TestFromPolicy(t *testing.T) {
	p := &configv1.Policy{
		RequestsPerMinute: proto.Int64(60),
		TokensPerMinute:   proto.Int64(150_000),
		Budgets: []*configv1.Budget{
			{Period: configv1.BudgetPeriod_BUDGET_PERIOD_DAY, HardLimitMicros: proto.Int64(10_000_000)},
			{Period: configv1.BudgetPeriod_BUDGET_PERIOD_MONTH, SoftLimitMicros: proto.Int64(0)},
			{Period: configv1.BudgetPeriod_BUDGET_PERIOD_TOTAL, HardLimitMicros: proto.Int64(9), SoftLimitMicros: proto.Int64(5)},
			{Period: configv1.BudgetPeriod_BUDGET_PERIOD_UNSPECIFIED, HardLimitMicros: proto.Int64(1)},
		},
	}
	want := Limits{
		RequestsPerMinute: Max(60),
		TokensPerMinute:   Max(150_000),
		Budgets: [numPeriods]Budget{
			Day:   {Hard: Max(10_000_000)},
			Month: {Soft: Max(0)},
			Total: {Hard: Max(9), Soft: Max(5)},
		},
	}
	if got := FromPolicy(p); !reflect.DeepEqual(got, want) {
		t.Errorf("FromPolicy\n got %+v\nwant %+v", got, want)
	}
	if got := FromPolicy(nil); got != (Limits{}) {
		t.Errorf("nil policy: %+v", got)
	}
	if v, ok := FromPolicy(&configv1.Policy{ConcurrentRequests: proto.Int64(3)}).ConcurrentRequests.Value(); !ok || v != 3 {
		t.Errorf("concurrency %d %v", v, ok)
	}
}

// Random traffic from many goroutines over tenants and keys with tight
// budgets, settled at or below the reservation: no budget is ever
// exceeded, and once everything is settled nothing is held, no slot is
// taken, and each budget has counted exactly what was settled.
func TestRandomTrafficKeepsTheBooks(t *testing.T) {
	e, _ := newEngine(noon)
	tenants := []Limits{day(50_000), day(20_000)}
	tenants[0].ConcurrentRequests = Max(6)
	keyLimits := []Limits{day(8_000), {RequestsPerMinute: Max(40)}, {ConcurrentRequests: Max(2), TokensPerMinute: Max(5_000)}, {}}
	type pick struct{ t, k int }
	var (
		mu      sync.Mutex
		settled = map[SubjectID]int64{}
		wg      sync.WaitGroup
	)
	for g := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			var open []*Reservation
			var opened []pick
			var costs []int64
			for range 400 {
				if len(open) > 0 && rng.IntN(2) == 0 {
					i := rng.IntN(len(open))
					r, p := open[i], opened[i]
					actual := int64(0)
					if rng.IntN(4) == 0 {
						r.Release()
					} else {
						actual = rng.Int64N(costs[i] + 1)
						r.Settle(Cost{Tokens: rng.Int64N(r.Cost().Tokens + 1), Micros: actual})
					}
					mu.Lock()
					settled[SubjectID{Tenant, string(rune('A' + p.t))}] += actual
					settled[SubjectID{Key, string(rune('A'+p.t)) + string(rune('0'+p.k))}] += actual
					mu.Unlock()
					open = append(open[:i], open[i+1:]...)
					opened = append(opened[:i], opened[i+1:]...)
					costs = append(costs[:i], costs[i+1:]...)
					continue
				}
				p := pick{rng.IntN(len(tenants)), rng.IntN(len(keyLimits))}
				s := []Subject{
					tenant(string(rune('A'+p.t)), tenants[p.t]),
					key(string(rune('A'+p.t))+string(rune('0'+p.k)), keyLimits[p.k]),
				}
				if rng.IntN(2) == 0 {
					s[0], s[1] = s[1], s[0]
				}
				c := Cost{Tokens: rng.Int64N(1000), Micros: rng.Int64N(3000)}
				if r, err := e.Admit(noon, s, c); err == nil {
					open, opened, costs = append(open, r), append(opened, p), append(costs, c.Micros)
				}
			}
			for _, r := range open {
				r.Release()
			}
		})
	}
	wg.Wait()
	check := func(s Subject) {
		st := e.State(s)
		d := st.Meters[DaySpend]
		if d.Held != 0 || st.Meters[ConcurrentRequests].Used != 0 {
			t.Errorf("%s: %+v still held or in flight", s.ID, st.Meters)
		}
		if want := settled[s.SubjectID()]; d.Used != want {
			t.Errorf("%s: day budget counted %d, settlements add up to %d", s.ID, d.Used, want)
		}
		if hard, ok := s.Limits.Budgets[Day].Hard.Value(); ok && d.Used > hard {
			t.Errorf("%s: spent %d over a budget of %d", s.ID, d.Used, hard)
		}
	}
	for ti, tl := range tenants {
		check(tenant(string(rune('A'+ti)), tl))
		for ki, kl := range keyLimits {
			check(key(string(rune('A'+ti))+string(rune('0'+ki)), kl))
		}
	}
}

// A subject dropped between a request finding its counters and locking
// them: the request must look again, or it counts into the dropped copy
// and the next request starts a fresh one beside it.
func TestAdmitLooksAgainWhenItsSubjectWasDropped(t *testing.T) {
	clk := &clock{t: noon}
	e := New(Options{Now: clk.Now, IdleAfter: time.Second})
	s := []Subject{key("k1", Limits{ConcurrentRequests: Max(1)})}
	r, err := e.Admit(noon, s, Cost{})
	if err != nil {
		t.Fatal(err)
	}
	r.Settle(Cost{})
	clk.Add(time.Minute)
	testHookBeforeLock = func() {
		testHookBeforeLock = nil
		e.Sweep() // k1 is idle and at rest: dropped
	}
	t.Cleanup(func() { testHookBeforeLock = nil })
	if _, err := e.Admit(clk.Now(), s, Cost{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Admit(clk.Now(), s, Cost{}); err == nil {
		t.Error("two requests in flight under a limit of 1: the first counted into dropped counters")
	}
}

// Sweep drops idle subjects while requests arrive. A request that found a
// subject's counters just before they were dropped must not count into the
// dropped copy while the next request counts into a new one: a limit of
// one concurrent request must hold throughout.
func TestSweepRacingAdmissionsNeverSplitsASubject(t *testing.T) {
	clk := &clock{t: noon}
	e := New(Options{Now: clk.Now, IdleAfter: time.Microsecond})
	s := []Subject{key("k1", Limits{ConcurrentRequests: Max(1)})}
	var (
		inFlight, peak, admitted atomic.Int64
		stop                     = make(chan struct{})
		sweeper                  sync.WaitGroup
		clients                  sync.WaitGroup
	)
	sweeper.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			clk.Add(time.Second)
			e.Sweep()
		}
	})
	for range 4 {
		clients.Go(func() {
			for range 3000 {
				r, err := e.Admit(clk.Now(), s, Cost{})
				if err != nil {
					continue
				}
				admitted.Add(1)
				n := inFlight.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				inFlight.Add(-1)
				r.Settle(Cost{})
			}
		})
	}
	clients.Wait()
	close(stop)
	sweeper.Wait()
	if peak.Load() > 1 {
		t.Errorf("%d requests in flight at once under a limit of 1", peak.Load())
	}
	if admitted.Load() == 0 {
		t.Error("nothing admitted")
	}
}
