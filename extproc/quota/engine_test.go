package quota

import (
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"
)

// clock is a fake clock for Settle, Release, State and Sweep.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func newEngine(start time.Time) (*Engine, *clock) {
	c := &clock{t: start}
	return New(Options{Now: c.Now}), c
}

func tenant(id string, l Limits) Subject { return Subject{Kind: Tenant, ID: id, Limits: l} }
func key(id string, l Limits) Subject    { return Subject{Kind: Key, ID: id, Limits: l} }

func day(hard int64) Limits {
	var l Limits
	l.Budgets[Day].Hard = Max(hard)
	return l
}

func denial(t *testing.T, err error) *Denial {
	t.Helper()
	var d *Denial
	if !errors.As(err, &d) {
		t.Fatalf("got %v, want a *Denial", err)
	}
	return d
}

func meter(e *Engine, s Subject, m Meter) MeterState { return e.State(s).Meters[m] }

var noon = utc("2028-02-28T12:00:00Z")

// Each limit, on its own, on a tenant: fill it, then the next request is
// refused with what the caller needs to answer.
func TestEachLimitRefusesWhenReached(t *testing.T) {
	for _, c := range []struct {
		name      string
		limits    Limits
		cost      Cost
		admits    int
		meter     Meter
		limit     int64
		used      int64
		requested int64
		reset     time.Time
		retry     time.Duration
	}{
		{
			name: "requests per minute", limits: Limits{RequestsPerMinute: Max(3)}, cost: Cost{Tokens: 10},
			admits: 3, meter: RequestsPerMinute, limit: 3, used: 3, requested: 1,
			reset: noon.Add(time.Minute), retry: 20 * time.Second,
		},
		{
			name: "tokens per minute", limits: Limits{TokensPerMinute: Max(1000)}, cost: Cost{Tokens: 400},
			admits: 2, meter: TokensPerMinute, limit: 1000, used: 800, requested: 400,
			reset: noon.Add(48 * time.Second), retry: 12 * time.Second,
		},
		{
			name: "concurrent requests", limits: Limits{ConcurrentRequests: Max(2)}, cost: Cost{Tokens: 10},
			admits: 2, meter: ConcurrentRequests, limit: 2, used: 2, requested: 1, retry: time.Second,
		},
		{
			name: "day budget", limits: day(1000), cost: Cost{Micros: 300},
			admits: 3, meter: DaySpend, limit: 1000, used: 900, requested: 300,
			reset: utc("2028-02-29T00:00:00Z"), retry: 12 * time.Hour,
		},
		{
			name: "month budget", limits: Limits{Budgets: [numPeriods]Budget{Month: {Hard: Max(1000)}}}, cost: Cost{Micros: 300},
			admits: 3, meter: MonthSpend, limit: 1000, used: 900, requested: 300,
			reset: utc("2028-03-01T00:00:00Z"), retry: 36 * time.Hour,
		},
		{
			name: "total budget", limits: Limits{Budgets: [numPeriods]Budget{Total: {Hard: Max(1000)}}}, cost: Cost{Micros: 300},
			admits: 3, meter: TotalSpend, limit: 1000, used: 900, requested: 300,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, _ := newEngine(noon)
			s := []Subject{tenant("t1", c.limits)}
			for i := range c.admits {
				if _, err := e.Admit(noon, s, c.cost); err != nil {
					t.Fatalf("request %d: %v", i+1, err)
				}
			}
			_, err := e.Admit(noon, s, c.cost)
			d := denial(t, err)
			want := Denial{
				Subject: SubjectID{Tenant, "t1"}, Meter: c.meter, Limit: c.limit, Used: c.used,
				Requested: c.requested, Remaining: c.limit - c.used, Reset: c.reset, RetryAfter: c.retry,
				Headers: d.Headers,
			}
			if p, ok := c.meter.Period(); ok && p != Total {
				want.Window = windowStart(p, InstantOf(noon).window(p))
			}
			if !reflect.DeepEqual(*d, want) {
				t.Errorf("denial\n got %+v\nwant %+v", *d, want)
			}
		})
	}
}

func TestNoLimitsAdmitEverything(t *testing.T) {
	e, _ := newEngine(noon)
	s := []Subject{tenant("t1", Limits{}), key("k1", Limits{})}
	for range 1000 {
		if _, err := e.Admit(noon, s, Cost{Tokens: 1 << 40, Micros: 1 << 50}); err != nil {
			t.Fatal(err)
		}
	}
	if got := meter(e, s[0], DaySpend).Used; got != 1000<<50 {
		t.Errorf("spend without a budget is still counted: used %d, want %d", got, int64(1000)<<50)
	}
}

// everything sets every limit, far from reached.
func everything() Limits {
	return Limits{
		RequestsPerMinute: Max(1000), TokensPerMinute: Max(1_000_000), ConcurrentRequests: Max(100),
		Budgets: [numPeriods]Budget{
			Day:   {Hard: Max(1e9), Soft: Max(5e8)},
			Month: {Hard: Max(1e10), Soft: Max(5e9)},
			Total: {Hard: Max(1e11), Soft: Max(5e10)},
		},
	}
}

// A refusal anywhere reserves nothing anywhere.
func TestRefusalReservesNothing(t *testing.T) {
	for _, c := range []struct {
		name      string
		tl, kl    Limits
		refusedBy SubjectID
	}{
		{"key budget refuses", everything(), day(150), SubjectID{Key, "k1"}},
		{"key rpm refuses", everything(), Limits{RequestsPerMinute: Max(1)}, SubjectID{Key, "k1"}},
		{"tenant concurrency refuses", Limits{ConcurrentRequests: Max(1)}, everything(), SubjectID{Tenant, "t1"}},
		{"tenant total budget refuses", Limits{Budgets: [numPeriods]Budget{Total: {Hard: Max(150)}}}, everything(), SubjectID{Tenant, "t1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, _ := newEngine(noon)
			s := []Subject{tenant("t1", c.tl), key("k1", c.kl)}
			if _, err := e.Admit(noon, s, Cost{Tokens: 100, Micros: 100}); err != nil {
				t.Fatal(err)
			}
			before := []State{e.State(s[0]), e.State(s[1])}
			_, err := e.Admit(noon, s, Cost{Tokens: 100, Micros: 100})
			if d := denial(t, err); d.Subject != c.refusedBy {
				t.Errorf("refused by %s, want %s", d.Subject, c.refusedBy)
			}
			after := []State{e.State(s[0]), e.State(s[1])}
			if !reflect.DeepEqual(before, after) {
				t.Errorf("a refused request changed counters:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
}

func TestStricterPolicyWins(t *testing.T) {
	e, _ := newEngine(noon)
	loose, strict := Limits{RequestsPerMinute: Max(100)}, Limits{RequestsPerMinute: Max(2)}
	keyStricter := []Subject{tenant("t1", loose), key("k1", strict)}
	for range 2 {
		if _, err := e.Admit(noon, keyStricter, Cost{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.Admit(noon, keyStricter, Cost{})
	if d := denial(t, err); d.Subject != (SubjectID{Key, "k1"}) || d.Limit != 2 {
		t.Errorf("refused by %s at %d; want the key's limit of 2", d.Subject, d.Limit)
	}
	// The tenant's stricter limit binds a key with a looser one, and
	// counts every key of the tenant.
	tenantStricter := []Subject{tenant("t2", strict), key("k2", loose)}
	other := []Subject{tenant("t2", strict), key("k3", loose)}
	if _, err := e.Admit(noon, tenantStricter, Cost{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Admit(noon, other, Cost{}); err != nil {
		t.Fatal(err)
	}
	_, err = e.Admit(noon, tenantStricter, Cost{})
	if d := denial(t, err); d.Subject != (SubjectID{Tenant, "t2"}) {
		t.Errorf("refused by %s; want tenant t2", d.Subject)
	}
}

// When several limits refuse, the denial names the one that lasts longest,
// so that a client retrying after retry-after is not refused again.
func TestDenialNamesTheLongestRefusal(t *testing.T) {
	e, _ := newEngine(noon)
	tl := Limits{RequestsPerMinute: Max(1)}
	kl := day(100)
	s := []Subject{tenant("t1", tl), key("k1", kl)}
	if _, err := e.Admit(noon, s, Cost{Micros: 100}); err != nil {
		t.Fatal(err)
	}
	_, err := e.Admit(noon, s, Cost{Micros: 1})
	if d := denial(t, err); d.Meter != DaySpend || d.RetryAfter != 12*time.Hour {
		t.Errorf("denial for %s retry %s; want the day budget (12h), not the minute's rate", d.Meter, d.RetryAfter)
	}
	kl.Budgets[Total].Hard = Max(100)
	s[1].Limits = kl
	_, err = e.Admit(noon, s, Cost{Micros: 1})
	if d := denial(t, err); d.Meter != TotalSpend || d.RetryAfter != 0 {
		t.Errorf("denial for %s retry %s; want the total budget, which no wait cures", d.Meter, d.RetryAfter)
	}
}

// 200 requests at once against a budget for exactly 10 of them: exactly
// 10 pass (run with -race).
func TestConcurrentAdmissionsNeverOverspend(t *testing.T) {
	for _, c := range []struct {
		name string
		keys int
	}{{"one key", 1}, {"many keys of one tenant", 7}} {
		t.Run(c.name, func(t *testing.T) {
			e, _ := newEngine(noon)
			tl := everything()
			tl.Budgets[Day].Hard = Max(10 * 250)
			var (
				wg       sync.WaitGroup
				start    = make(chan struct{})
				mu       sync.Mutex
				admitted []*Reservation
				refused  int
			)
			for i := range 200 {
				wg.Go(func() {
					s := []Subject{tenant("t1", tl), key(string(rune('a'+i%c.keys)), everything())}
					<-start
					r, err := e.Admit(noon, s, Cost{Tokens: 10, Micros: 250})
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						if d := (*Denial)(nil); !errors.As(err, &d) {
							t.Errorf("got %v, want a *Denial", err) // not Fatal: another goroutine
						}
						refused++
						return
					}
					admitted = append(admitted, r)
				})
			}
			close(start)
			wg.Wait()
			if len(admitted) != 10 || refused != 190 {
				t.Fatalf("admitted %d, refused %d; want 10 and 190", len(admitted), refused)
			}
			ts := tenant("t1", tl)
			if got := meter(e, ts, DaySpend); got.Used != 2500 || got.Held != 2500 {
				t.Errorf("tenant day budget %+v; want 2500 held", got)
			}
			if got := meter(e, ts, ConcurrentRequests).Used; got != 10 {
				t.Errorf("tenant concurrency %d; want 10", got)
			}
			for _, r := range admitted {
				r.Settle(Cost{Tokens: 5, Micros: 100})
			}
			if got := meter(e, ts, DaySpend); got.Used != 1000 || got.Held != 0 {
				t.Errorf("after settling: %+v; want 1000 spent, nothing held", got)
			}
			if got := meter(e, ts, ConcurrentRequests).Used; got != 0 {
				t.Errorf("concurrency %d after settling everything; want 0", got)
			}
		})
	}
}

func TestSettleBelowReservationMakesRoom(t *testing.T) {
	e, _ := newEngine(noon)
	s := []Subject{tenant("t1", Limits{TokensPerMinute: Max(1000), Budgets: day(100).Budgets})}
	r, err := e.Admit(noon, s, Cost{Tokens: 800, Micros: 60})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Admit(noon, s, Cost{Tokens: 100, Micros: 60}); err == nil {
		t.Fatal("a second worst case must not fit while the first is held")
	}
	r.Settle(Cost{Tokens: 150, Micros: 10})
	r2, err := e.Admit(noon, s, Cost{Tokens: 800, Micros: 90})
	if err != nil {
		t.Fatalf("after settling at 10 of 60: %v", err)
	}
	r2.Settle(Cost{Tokens: 800, Micros: 90})
	if got := meter(e, s[0], DaySpend); got.Used != 100 || got.Held != 0 {
		t.Errorf("day budget %+v; want exactly 100 spent", got)
	}
}

func TestSettleAboveReservationChargesTheExcess(t *testing.T) {
	e, _ := newEngine(noon)
	s := []Subject{tenant("t1", day(100)), key("k1", Limits{})}
	r, err := e.Admit(noon, s, Cost{Micros: 10})
	if err != nil {
		t.Fatal(err)
	}
	r.Settle(Cost{Micros: 150})
	for _, sub := range s {
		if got := meter(e, sub, DaySpend).Used; got != 150 {
			t.Errorf("%s spent %d; want 150 (the excess is charged, not lost)", sub.ID, got)
		}
	}
	_, err = e.Admit(noon, s, Cost{Micros: 0})
	if d := denial(t, err); d.Used != 150 || d.Remaining != 0 {
		t.Errorf("denial %+v; want used 150, nothing remaining", d)
	}
}

// A streamed response holds its reservation until it is settled, however
// long it runs.
func TestStreamHoldsReservationUntilSettled(t *testing.T) {
	e, clk := newEngine(noon)
	l := day(100)
	l.ConcurrentRequests = Max(1)
	l.TokensPerMinute = Max(1000)
	s := []Subject{tenant("t1", l)}
	r, err := e.Admit(noon, s, Cost{Tokens: 900, Micros: 80})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{time.Second, time.Minute, 10 * time.Minute} {
		now := clk.Add(d)
		_, err := e.Admit(now, s, Cost{Tokens: 10, Micros: 10})
		if d := denial(t, err); d.Meter != ConcurrentRequests {
			t.Errorf("%s into the stream: refused by %s, want concurrency", now.Sub(noon), d.Meter)
		}
		if got := meter(e, s[0], DaySpend).Held; got != 80 {
			t.Errorf("%s into the stream: %d held, want 80", now.Sub(noon), got)
		}
	}
	r.Settle(Cost{Tokens: 500, Micros: 50})
	if _, err := e.Admit(clk.Now(), s, Cost{Tokens: 10, Micros: 50}); err != nil {
		t.Errorf("after the stream settled: %v", err)
	}
}

func TestReleaseChargesNothingButCountsTheRequest(t *testing.T) {
	e, _ := newEngine(noon)
	l := day(100)
	l.RequestsPerMinute = Max(2)
	l.TokensPerMinute = Max(1000)
	s := []Subject{tenant("t1", l)}
	r, err := e.Admit(noon, s, Cost{Tokens: 1000, Micros: 100})
	if err != nil {
		t.Fatal(err)
	}
	r.Release()
	st := e.State(s[0])
	if st.Meters[DaySpend].Used != 0 || st.Meters[TokensPerMinute].Used != 0 || st.Meters[ConcurrentRequests].Used != 0 {
		t.Errorf("released request still counts: %+v", st.Meters)
	}
	if st.Meters[RequestsPerMinute].Used != 1 {
		t.Errorf("requests per minute %d after a release; want 1", st.Meters[RequestsPerMinute].Used)
	}
}

func TestSettleIsIdempotent(t *testing.T) {
	e, _ := newEngine(noon)
	s := []Subject{tenant("t1", Limits{ConcurrentRequests: Max(5)}), key("k1", Limits{})}
	r1, _ := e.Admit(noon, s, Cost{Micros: 10})
	r2, _ := e.Admit(noon, s, Cost{Micros: 10})
	r1.Settle(Cost{Micros: 10})
	r1.Settle(Cost{Micros: 10})
	r1.Release()
	if got := meter(e, s[0], ConcurrentRequests).Used; got != 1 {
		t.Errorf("concurrency %d; want 1 (r2 still in flight)", got)
	}
	if got := meter(e, s[0], DaySpend).Used; got != 20 {
		t.Errorf("spent+held %d; want 20 (r1 charged once, r2 held)", got)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { r2.Settle(Cost{Micros: 10}) })
		wg.Go(func() { r2.Release() })
	}
	wg.Wait()
	st := meter(e, s[0], DaySpend)
	if st.Used != 20 && st.Used != 10 || st.Held != 0 {
		t.Errorf("after racing settlements: %+v; want one of them applied once", st)
	}
	if got := meter(e, s[0], ConcurrentRequests).Used; got != 0 {
		t.Errorf("concurrency %d; want 0", got)
	}
}

func TestRateWindowRollsOverWithTheClock(t *testing.T) {
	e, _ := newEngine(noon)
	s := []Subject{key("k1", Limits{RequestsPerMinute: Max(60)})}
	for range 60 {
		if _, err := e.Admit(noon, s, Cost{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Admit(noon.Add(999*time.Millisecond), s, Cost{}); err == nil {
		t.Fatal("61st request within the first second must be refused")
	}
	if _, err := e.Admit(noon.Add(time.Second), s, Cost{}); err != nil {
		t.Fatalf("one request refills each second: %v", err)
	}
	if _, err := e.Admit(noon.Add(time.Second), s, Cost{}); err == nil {
		t.Fatal("only one request refilled after a second")
	}
	for i := range 60 {
		if _, err := e.Admit(noon.Add(2*time.Minute), s, Cost{}); err != nil {
			t.Fatalf("a minute later the window is full again; request %d: %v", i+1, err)
		}
	}
}

func TestBudgetsRollOverAtUTCBoundaries(t *testing.T) {
	for _, c := range []struct {
		name          string
		period        Period
		before, after string
	}{
		{"day, into 29 February 2028", Day, "2028-02-28T23:59:59.999Z", "2028-02-29T00:00:00Z"},
		{"day, out of 29 February 2028", Day, "2028-02-29T23:59:59.999Z", "2028-03-01T00:00:00Z"},
		{"month, February 2028 has 29 days", Month, "2028-02-29T23:59:59.999Z", "2028-03-01T00:00:00Z"},
		{"month, February 2027 has 28", Month, "2027-02-28T23:59:59.999Z", "2027-03-01T00:00:00Z"},
		{"month, 30-day April", Month, "2028-04-30T23:59:59.999Z", "2028-05-01T00:00:00Z"},
		{"month, into a new year", Month, "2028-12-31T23:59:59.999Z", "2029-01-01T00:00:00Z"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before, after := utc(c.before), utc(c.after)
			e, _ := newEngine(before)
			var l Limits
			l.Budgets[c.period].Hard = Max(100)
			s := []Subject{tenant("t1", l)}
			r, err := e.Admit(before, s, Cost{Micros: 100})
			if err != nil {
				t.Fatal(err)
			}
			r.Settle(Cost{Micros: 100})
			_, err = e.Admit(before, s, Cost{Micros: 1})
			d := denial(t, err)
			if !d.Reset.Equal(after) || d.RetryAfter != time.Millisecond {
				t.Errorf("reset %s retry %s; want %s and 1ms", d.Reset, d.RetryAfter, after)
			}
			if _, err := e.Admit(after, s, Cost{Micros: 100}); err != nil {
				t.Errorf("at %s the budget is fresh: %v", c.after, err)
			}
			// A request stamped just before the boundary that arrives after
			// it counts in the new window: windows never move back (which
			// would drop the new window's 100).
			if _, err := e.Admit(after.Add(-time.Microsecond), s, Cost{Micros: 1}); err == nil {
				t.Errorf("a late request stamped before %s rolled the window back", c.after)
			}
			if got := meter(e, s[0], c.period.spendMeter()).Used; got != 100 {
				t.Errorf("new window's spend %d; want 100", got)
			}
		})
	}
}

// A request admitted before midnight and settled after is spend of the day
// it started, like its usage record: it does not eat into the new day.
func TestReservationAcrossMidnightBelongsToItsDay(t *testing.T) {
	before := utc("2028-02-28T23:59:59Z")
	e, clk := newEngine(before)
	l := day(100)
	l.Budgets[Total].Hard = Max(1000)
	s := []Subject{tenant("t1", l)}
	r, err := e.Admit(before, s, Cost{Micros: 100})
	if err != nil {
		t.Fatal(err)
	}
	clk.Set(utc("2028-02-29T00:00:30Z"))
	r.Settle(Cost{Micros: 70})
	st := e.State(s[0])
	if st.Meters[DaySpend].Used != 0 {
		t.Errorf("new day's spend %d; want 0", st.Meters[DaySpend].Used)
	}
	if st.Meters[TotalSpend].Used != 70 || st.Meters[TotalSpend].Held != 0 {
		t.Errorf("total %+v; want 70 spent, nothing held", st.Meters[TotalSpend])
	}
}

func TestSoftLimitReportedOncePerWindow(t *testing.T) {
	e, clk := newEngine(noon)
	var l Limits
	l.Budgets[Day] = Budget{Hard: Max(1000), Soft: Max(50)}
	l.Budgets[Total] = Budget{Soft: Max(100)}
	s := []Subject{tenant("t1", l), key("k1", Limits{})}
	spend := func(micros int64) []Event {
		t.Helper()
		r, err := e.Admit(clk.Now(), s, Cost{Micros: 500})
		if err != nil {
			t.Fatal(err)
		}
		return r.Settle(Cost{Micros: micros})
	}
	if ev := spend(30); len(ev) != 0 {
		t.Fatalf("below the soft limit: %+v", ev)
	}
	ev := spend(30)
	want := []Event{{Kind: SoftLimitReached, Subject: SubjectID{Tenant, "t1"}, Meter: DaySpend, Limit: 50, Used: 60,
		Window: utc("2028-02-28T00:00:00Z"), At: noon}}
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("crossing 50:\n got %+v\nwant %+v", ev, want)
	}
	if ev := spend(30); len(ev) != 0 {
		t.Fatalf("already reported today: %+v", ev)
	}
	// The total soft limit is its own, reported once ever.
	ev = spend(30)
	if len(ev) != 1 || ev[0].Meter != TotalSpend || ev[0].Used != 120 || !ev[0].Window.IsZero() {
		t.Fatalf("crossing the total soft limit: %+v", ev)
	}
	if ev := spend(0); len(ev) != 0 {
		t.Fatalf("nothing new: %+v", ev)
	}
	// A new day: reported again once reached, the total not again.
	clk.Set(utc("2028-02-29T08:00:00Z"))
	if ev := spend(49); len(ev) != 0 {
		t.Fatalf("new day below 50: %+v", ev)
	}
	ev = spend(1)
	if len(ev) != 1 || ev[0].Meter != DaySpend || ev[0].Used != 50 || !ev[0].Window.Equal(utc("2028-02-29T00:00:00Z")) {
		t.Fatalf("new day reaching 50: %+v", ev)
	}
	// Raising the soft limit re-arms it for the window.
	l.Budgets[Day].Soft = Max(200)
	s[0].Limits = l
	if ev := spend(100); len(ev) != 0 {
		t.Fatalf("below the raised limit: %+v", ev)
	}
	if ev := spend(100); len(ev) != 1 || ev[0].Limit != 200 {
		t.Fatalf("reaching the raised limit: %+v", ev)
	}
}

// Limits change between requests (a policy update); the usage counted so
// far stays.
func TestPolicyChangeKeepsCounters(t *testing.T) {
	e, _ := newEngine(noon)
	l := day(1000)
	l.RequestsPerMinute = Max(10)
	s := []Subject{tenant("t1", l)}
	for range 5 {
		r, err := e.Admit(noon, s, Cost{Micros: 100})
		if err != nil {
			t.Fatal(err)
		}
		r.Settle(Cost{Micros: 100})
	}
	// Lowered below what is used: refused at once, with the old usage.
	s[0].Limits.Budgets[Day].Hard = Max(400)
	_, err := e.Admit(noon, s, Cost{Micros: 1})
	if d := denial(t, err); d.Meter != DaySpend || d.Used != 500 || d.Limit != 400 {
		t.Errorf("after lowering the budget: %+v", d)
	}
	// Raised: room for exactly the difference.
	s[0].Limits.Budgets[Day].Hard = Max(700)
	if _, err := e.Admit(noon, s, Cost{Micros: 200}); err != nil {
		t.Errorf("raised budget: %v", err)
	}
	_, err = e.Admit(noon, s, Cost{Micros: 1})
	if d := denial(t, err); d.Used != 700 {
		t.Errorf("raised budget, then full: used %d, want 700", d.Used)
	}
	// A rate limit lowered to what is used refuses; the 6 requests so far
	// still count.
	s[0].Limits = Limits{RequestsPerMinute: Max(6)}
	_, err = e.Admit(noon, s, Cost{})
	if d := denial(t, err); d.Meter != RequestsPerMinute || d.Used != 6 {
		t.Errorf("after lowering RPM: %+v", d)
	}
	// A budget set for the first time starts from the spend counted
	// without one.
	s[0].Limits = Limits{Budgets: [numPeriods]Budget{Month: {Hard: Max(750)}}}
	if _, err := e.Admit(noon, s, Cost{Micros: 51}); err == nil {
		t.Error("a new month budget of 750 must see the 700 spent this month")
	}
}

func TestHeaders(t *testing.T) {
	e, _ := newEngine(noon)
	s := []Subject{
		tenant("t1", Limits{RequestsPerMinute: Max(60), TokensPerMinute: Max(150_000)}),
		key("k1", Limits{RequestsPerMinute: Max(100), TokensPerMinute: Max(10_000)}),
	}
	r, err := e.Admit(noon, s, Cost{Tokens: 1000})
	if err != nil {
		t.Fatal(err)
	}
	got := r.Headers().Append(nil)
	want := []Header{
		// The tenant's requests (59 left of 60) are stricter than the key's (99 of 100).
		{"x-ratelimit-limit-requests", "60"},
		{"x-ratelimit-remaining-requests", "59"},
		{"x-ratelimit-reset-requests", "1s"},
		// The key's tokens (9000 of 10000) are stricter than the tenant's.
		{"x-ratelimit-limit-tokens", "10000"},
		{"x-ratelimit-remaining-tokens", "9000"},
		{"x-ratelimit-reset-tokens", "6s"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("headers\n got %v\nwant %v", got, want)
	}
	if h := (RateHeaders{}).Append(nil); len(h) != 0 {
		t.Errorf("no rate limits, no headers: %v", h)
	}
	noRPM := []Subject{tenant("t2", Limits{TokensPerMinute: Max(100)})}
	r, _ = e.Admit(noon, noRPM, Cost{Tokens: 1})
	if h := r.Headers().Append(nil); len(h) != 3 || h[0].Name != "x-ratelimit-limit-tokens" {
		t.Errorf("tokens only: %v", h)
	}
}

func TestFormatResetMatchesOpenAI(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                     "0s",
		-time.Second:                          "0s",
		time.Second:                           "1s",
		6 * time.Minute:                       "6m0s",
		8640 * time.Millisecond:               "8.64s",
		120 * time.Millisecond:                "120ms",
		time.Microsecond:                      "1ms",
		1500*time.Microsecond + 1:             "2ms",
		time.Hour + 2*time.Minute:             "1h2m0s",
		59*time.Second + 999*time.Microsecond: "59.001s",
	} {
		if got := formatReset(d); got != want {
			t.Errorf("formatReset(%d) = %q, want %q", d, got, want)
		}
	}
}

func TestDenialHeadersAndMessages(t *testing.T) {
	e, _ := newEngine(noon)
	s := []Subject{key("k1", Limits{RequestsPerMinute: Max(3), TokensPerMinute: Max(1000)})}
	for range 3 {
		if _, err := e.Admit(noon, s, Cost{Tokens: 10}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.Admit(noon, s, Cost{Tokens: 10})
	d := denial(t, err)
	got := d.AppendHeaders(nil)
	want := []Header{
		{"retry-after", "20"}, {"retry-after-ms", "20000"},
		{"x-ratelimit-limit-requests", "3"}, {"x-ratelimit-remaining-requests", "0"}, {"x-ratelimit-reset-requests", "1m0s"},
		{"x-ratelimit-limit-tokens", "1000"}, {"x-ratelimit-remaining-tokens", "970"}, {"x-ratelimit-reset-tokens", "1.8s"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("denial headers\n got %v\nwant %v", got, want)
	}
	if msg := d.Error(); msg != "Rate limit reached for requests per minute (RPM) on key k1: Limit 3, Used 3, Requested 1. Please try again in 20s." {
		t.Errorf("message %q", msg)
	}
	if typ, code := d.OpenAIError(); typ != "requests" || code != "rate_limit_exceeded" {
		t.Errorf("OpenAI error %s/%s", typ, code)
	}

	_, err = e.Admit(noon, []Subject{key("k2", Limits{TokensPerMinute: Max(1000)})}, Cost{Tokens: 5000})
	d = denial(t, err)
	if d.RetryAfter != 0 || len(d.AppendHeaders(nil)) != 3 {
		t.Errorf("a request larger than the TPM limit can never pass: retry %s, headers %v", d.RetryAfter, d.AppendHeaders(nil))
	}
	if msg := d.Error(); msg != "Request too large for tokens per minute (TPM) on key k2: Limit 1000, Requested 5000. Lower the prompt or max_tokens." {
		t.Errorf("message %q", msg)
	}

	budget := []Subject{tenant("t1", day(2_000_000))}
	r, _ := e.Admit(noon, budget, Cost{Micros: 1_500_000})
	r.Settle(Cost{Micros: 1_500_000})
	_, err = e.Admit(noon, budget, Cost{Micros: 600_000})
	d = denial(t, err)
	if msg := d.Error(); msg != "The daily budget of tenant t1 ($2.000000) does not cover this request: used $1.500000, this request may cost up to $0.600000. It resets at 2028-02-29T00:00:00Z." {
		t.Errorf("message %q", msg)
	}
	if typ, code := d.OpenAIError(); typ != "insufficient_quota" || code != "insufficient_quota" {
		t.Errorf("OpenAI error %s/%s", typ, code)
	}
	if h := d.AppendHeaders(nil); h[0] != (Header{"retry-after", "43200"}) {
		t.Errorf("budget retry-after %v; want 12h in seconds", h)
	}

	total := []Subject{tenant("t3", Limits{Budgets: [numPeriods]Budget{Total: {Hard: Max(0)}}})}
	_, err = e.Admit(noon, total, Cost{})
	d = denial(t, err)
	if msg := d.Error(); msg != "The total budget of tenant t3 ($0.000000) does not cover this request: used $0.000000, this request may cost up to $0.000000. It does not reset; an administrator can raise it." {
		t.Errorf("message %q", msg)
	}
	if h := d.AppendHeaders(nil); len(h) != 0 {
		t.Errorf("a total budget gives no retry-after: %v", h)
	}
}

func TestStateShowsUseLimitAndReset(t *testing.T) {
	e, clk := newEngine(noon)
	l := everything()
	s := []Subject{tenant("t1", l)}
	r, err := e.Admit(noon, s, Cost{Tokens: 600, Micros: 300})
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := e.Admit(noon, s, Cost{Tokens: 400, Micros: 200})
	r2.Settle(Cost{Tokens: 400, Micros: 150})
	// 30ms later, 1000 requests per minute have drained half a request,
	// and 1,000,000 tokens per minute 500 tokens.
	clk.Set(noon.Add(30 * time.Millisecond))
	st := e.State(s[0])
	want := []MeterState{
		{Meter: RequestsPerMinute, Limit: Max(1000), Used: 2, Remaining: 998, Reset: noon.Add(120 * time.Millisecond)},
		{Meter: TokensPerMinute, Limit: Max(1_000_000), Used: 500, Remaining: 999_500, Reset: noon.Add(60 * time.Millisecond)},
		{Meter: ConcurrentRequests, Limit: Max(100), Used: 1, Remaining: 99},
		{Meter: DaySpend, Limit: Max(1e9), Soft: Max(5e8), Used: 450, Held: 300, Remaining: 1e9 - 450, Reset: utc("2028-02-29T00:00:00Z")},
		{Meter: MonthSpend, Limit: Max(1e10), Soft: Max(5e9), Used: 450, Held: 300, Remaining: 1e10 - 450, Reset: utc("2028-03-01T00:00:00Z")},
		{Meter: TotalSpend, Limit: Max(1e11), Soft: Max(5e10), Used: 450, Held: 300, Remaining: 1e11 - 450},
	}
	if !reflect.DeepEqual(st.Meters, want) {
		for i := range want {
			if !reflect.DeepEqual(st.Meters[i], want[i]) {
				t.Errorf("%s\n got %+v\nwant %+v", want[i].Meter, st.Meters[i], want[i])
			}
		}
	}
	r.Release()
	unknown := e.State(key("never-seen", day(5)))
	if unknown.Meters[DaySpend].Used != 0 || unknown.Meters[DaySpend].Remaining != 5 || !unknown.Meters[DaySpend].Reset.Equal(utc("2028-02-29T00:00:00Z")) {
		t.Errorf("unknown subject: %+v", unknown.Meters[DaySpend])
	}
}

func TestSweepSettlesForgottenReservations(t *testing.T) {
	e, clk := newEngine(noon)
	l := day(1000)
	l.ConcurrentRequests = Max(1)
	s := []Subject{tenant("t1", l), key("k1", Limits{})}
	leaked, err := e.Admit(noon, s, Cost{Micros: 400})
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(59 * time.Minute)
	if ev := e.Sweep(); len(ev) != 0 {
		t.Fatalf("swept a reservation younger than MaxHold: %+v", ev)
	}
	clk.Add(time.Minute)
	ev := e.Sweep()
	if len(ev) != 2 || ev[0].Kind != ReservationExpired || ev[0].Used != 400 {
		t.Fatalf("events %+v; want one expiry per subject, charged 400", ev)
	}
	if _, err := e.Admit(clk.Now(), s, Cost{Micros: 600}); err != nil {
		t.Errorf("the expired reservation must free its slot and keep its 400 charged: %v", err)
	}
	if got := meter(e, s[0], DaySpend).Used; got != 1000 {
		t.Errorf("day spend %d; want 400 charged + 600 held", got)
	}
	if ev := leaked.Settle(Cost{Micros: 1}); ev != nil || meter(e, s[0], DaySpend).Used != 1000 {
		t.Error("a late Settle of an expired reservation must do nothing")
	}
}

func TestSweepDropsOnlyIdleSubjectsWithNothingCounted(t *testing.T) {
	e, clk := newEngine(noon)
	budgeted := tenant("budgeted", day(1000))
	free := tenant("free", Limits{RequestsPerMinute: Max(10)})
	for _, s := range []Subject{budgeted, free} {
		r, err := e.Admit(noon, []Subject{s}, Cost{Micros: 100})
		if err != nil {
			t.Fatal(err)
		}
		r.Settle(Cost{Micros: 100})
	}
	clk.Add(10 * time.Minute)
	e.Sweep()
	count := func() (n int) {
		e.accounts.Range(func(any, any) bool { n++; return true })
		return n
	}
	if n := count(); n != 1 {
		t.Fatalf("%d subjects left; want only the one with a budget that counts today's spend", n)
	}
	if got := meter(e, budgeted, DaySpend).Used; got != 100 {
		t.Errorf("kept subject's spend %d; want 100", got)
	}
	clk.Set(utc("2028-02-29T00:10:00Z"))
	e.Sweep()
	if n := count(); n != 0 {
		t.Errorf("%d subjects left after the day ended; want 0", n)
	}
}

func TestForgetDropsCounters(t *testing.T) {
	e, _ := newEngine(noon)
	s := []Subject{key("k1", day(100))}
	if _, err := e.Admit(noon, s, Cost{Micros: 100}); err != nil {
		t.Fatal(err)
	}
	e.Forget(s[0].SubjectID())
	if _, err := e.Admit(noon, s, Cost{Micros: 100}); err != nil {
		t.Errorf("a forgotten subject starts afresh: %v", err)
	}
}

func TestAdmitRejectsBadSubjectLists(t *testing.T) {
	e, _ := newEngine(noon)
	k := key("k1", Limits{})
	for name, s := range map[string][]Subject{
		"none":      nil,
		"too many":  {k, key("k2", Limits{}), key("k3", Limits{}), key("k4", Limits{}), key("k5", Limits{})},
		"duplicate": {tenant("t1", Limits{}), k, k},
	} {
		if _, err := e.Admit(noon, s, Cost{}); !errors.Is(err, ErrSubjects) {
			t.Errorf("%s: %v, want ErrSubjects", name, err)
		}
	}
	if _, err := e.Admit(noon, []Subject{tenant("x", Limits{}), key("x", Limits{})}, Cost{}); err != nil {
		t.Errorf("a tenant and a key may share an id: %v", err)
	}
}

// Locks are taken in the order the engine met the subjects, not in the
// order the caller lists them; each subject must still get its own limits.
func TestSubjectsListedInAnyOrderKeepTheirOwnLimits(t *testing.T) {
	e, _ := newEngine(noon)
	strict, loose := Limits{RequestsPerMinute: Max(1)}, Limits{RequestsPerMinute: Max(100)}
	// Met key first, so it locks first.
	if _, err := e.Admit(noon, []Subject{key("k1", strict)}, Cost{}); err != nil {
		t.Fatal(err)
	}
	_, err := e.Admit(noon, []Subject{tenant("t1", loose), key("k1", strict)}, Cost{})
	if d := denial(t, err); d.Subject != (SubjectID{Key, "k1"}) || d.Limit != 1 {
		t.Errorf("refused by %s at limit %d; want the key's own limit of 1", d.Subject, d.Limit)
	}
	if got := meter(e, tenant("t1", loose), RequestsPerMinute).Used; got != 0 {
		t.Errorf("tenant counted %d requests from a refused request", got)
	}
}

func TestSoftLimitOfZeroReportsTheFirstSpend(t *testing.T) {
	e, _ := newEngine(noon)
	var l Limits
	l.Budgets[Month].Soft = Max(0)
	s := []Subject{tenant("t1", l)}
	r, _ := e.Admit(noon, s, Cost{Micros: 10})
	if ev := r.Settle(Cost{}); len(ev) != 0 {
		t.Errorf("nothing spent, yet %+v", ev)
	}
	r, _ = e.Admit(noon, s, Cost{Micros: 10})
	if ev := r.Settle(Cost{Micros: 1}); len(ev) != 1 || ev[0].Meter != MonthSpend {
		t.Errorf("first micro-dollar: %+v; want the month's soft limit reported", ev)
	}
}
