package quota

import (
	"math"
	"testing"
	"time"
)

// take reserves units that must fit.
func take(t *testing.T, c Counter, at Instant, n, limit int64) Mark {
	t.Helper()
	m, ok := c.Reserve(at, n, limit)
	if !ok {
		t.Fatalf("%d units under a limit of %d refused: %+v", n, limit, c.Look(at, n, limit))
	}
	return m
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestInstantCalendarWindows(t *testing.T) {
	for _, c := range []struct {
		at                   string
		dayStart, dayEnd     string
		monthStart, monthEnd string
	}{
		{"2028-02-28T23:59:59.999999Z", "2028-02-28T00:00:00Z", "2028-02-29T00:00:00Z", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"},
		{"2028-02-29T00:00:00Z", "2028-02-29T00:00:00Z", "2028-03-01T00:00:00Z", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"},
		{"2028-02-29T23:59:59.999Z", "2028-02-29T00:00:00Z", "2028-03-01T00:00:00Z", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"},
		{"2027-02-28T12:00:00Z", "2027-02-28T00:00:00Z", "2027-03-01T00:00:00Z", "2027-02-01T00:00:00Z", "2027-03-01T00:00:00Z"},
		{"2028-12-31T23:59:59.999Z", "2028-12-31T00:00:00Z", "2029-01-01T00:00:00Z", "2028-12-01T00:00:00Z", "2029-01-01T00:00:00Z"},
		{"2028-01-31T10:00:00Z", "2028-01-31T00:00:00Z", "2028-02-01T00:00:00Z", "2028-01-01T00:00:00Z", "2028-02-01T00:00:00Z"},
		// A time in another zone is placed by its UTC day: 23:30 in New York
		// on 3 March is 04:30 UTC on 4 March.
		{"2028-03-03T23:30:00-05:00", "2028-03-04T00:00:00Z", "2028-03-05T00:00:00Z", "2028-03-01T00:00:00Z", "2028-04-01T00:00:00Z"},
	} {
		at := InstantOf(utc(c.at))
		check := func(what string, got time.Time, want string) {
			t.Helper()
			if !got.Equal(utc(want)) {
				t.Errorf("%s: %s = %s, want %s", c.at, what, got.Format(time.RFC3339Nano), want)
			}
		}
		check("day start", windowStart(Day, at.Day), c.dayStart)
		check("day end", timeOf(windowEnd(Day, at.Day)), c.dayEnd)
		check("month start", windowStart(Month, at.Month), c.monthStart)
		check("month end", timeOf(windowEnd(Month, at.Month)), c.monthEnd)
	}
	if windowEnd(Total, 0) != 0 {
		t.Error("a total window must never end")
	}
}

// At 60 requests per minute, OpenAI's documented example: one request
// leaves 59, back to full in 1s.
func TestRollingCounterIsATokenBucket(t *testing.T) {
	t0 := utc("2028-02-28T12:00:00Z")
	at := func(d time.Duration) Instant { return InstantOf(t0.Add(d)) }
	r := &rollingCounter{}

	rd := r.Look(at(0), 1, 60)
	if !rd.Fits || rd.Remaining != 60 || rd.Used != 0 || rd.Reset != t0.UnixMicro() {
		t.Fatalf("empty bucket: %+v", rd)
	}
	take(t, r, at(0), 1, 60)
	rd = r.Look(at(0), 0, 60)
	if rd.Remaining != 59 || rd.Used != 1 || timeOf(rd.Reset).Sub(t0) != time.Second {
		t.Fatalf("after one request: remaining %d, used %d, reset in %s; want 59, 1, 1s", rd.Remaining, rd.Used, timeOf(rd.Reset).Sub(t0))
	}
	for range 59 {
		take(t, r, at(0), 1, 60)
	}
	rd = r.Look(at(0), 1, 60)
	if rd.Fits || rd.Remaining != 0 || rd.Wait != time.Second || timeOf(rd.Reset).Sub(t0) != time.Minute {
		t.Fatalf("full bucket: %+v; want refused, 0 left, wait 1s, reset in 1m", rd)
	}
	if r.Look(at(999*time.Millisecond), 1, 60).Fits {
		t.Error("one request must not fit before 1s has refilled one")
	}
	rd = r.Look(at(time.Second), 1, 60)
	if !rd.Fits || rd.Remaining != 1 {
		t.Errorf("after 1s: %+v; want one request to fit", rd)
	}
	rd = r.Look(at(30*time.Second), 0, 60)
	if rd.Remaining != 30 || rd.Used != 30 || timeOf(rd.Reset).Sub(t0) != time.Minute {
		t.Errorf("after 30s: %+v; want 30 used, 30 left, full at 1m", rd)
	}
	rd = r.Look(at(time.Hour), 0, 60)
	if rd.Remaining != 60 || rd.Used != 0 {
		t.Errorf("an hour later: %+v; want full", rd)
	}
}

func TestRollingCounterTokens(t *testing.T) {
	t0 := utc("2028-02-28T12:00:00Z")
	at := InstantOf(t0)
	r := &rollingCounter{}
	m := take(t, r, at, 600, 1000)
	rd := r.Look(at, 600, 1000)
	// 200 tokens must drain at 1000 per minute: 12s.
	if rd.Fits || rd.Wait != 12*time.Second || rd.Remaining != 400 {
		t.Fatalf("600 of 1000 taken, 600 more: %+v; want refused, wait 12s, 400 left", rd)
	}
	r.Settle(at, m, 600, 100, 1000)
	if rd := r.Look(at, 600, 1000); !rd.Fits || rd.Used != 100 {
		t.Fatalf("settled at 100: %+v; want 600 more to fit, 100 used", rd)
	}
	if rd := r.Look(at, 1001, 1000); rd.Fits || rd.Wait != 0 {
		t.Errorf("more than the limit: %+v; want refused for good (no wait)", rd)
	}
}

// A refund must not erase usage that came after the reservation drained.
func TestRollingRefundStopsAtWhatHasNotDrained(t *testing.T) {
	t0 := utc("2028-02-28T12:00:00Z")
	r := &rollingCounter{}
	a := take(t, r, InstantOf(t0), 600, 1000) // drained by t0+36s
	later := InstantOf(t0.Add(36 * time.Second))
	take(t, r, later, 900, 1000)
	r.Settle(later, a, 600, 100, 1000)
	if rd := r.Look(later, 0, 1000); rd.Used != 900 {
		t.Fatalf("used %d after a late refund; want the later request's 900 intact", rd.Used)
	}
	// Half drained: at t0+18s 300 of the 600 are still in the bucket, so
	// at most 300 come back.
	r = &rollingCounter{}
	a = take(t, r, InstantOf(t0), 600, 1000)
	mid := InstantOf(t0.Add(18 * time.Second))
	take(t, r, mid, 500, 1000)
	r.Settle(mid, a, 600, 0, 1000)
	if rd := r.Look(mid, 0, 1000); rd.Used != 500 {
		t.Errorf("used %d; want 500 (the 300 undrained tokens refunded, the later 500 kept)", rd.Used)
	}
}

func TestRollingSettleAboveReservationCharges(t *testing.T) {
	at := InstantOf(utc("2028-02-28T12:00:00Z"))
	r := &rollingCounter{}
	m := take(t, r, at, 100, 1000)
	r.Settle(at, m, 100, 1500, 1000)
	rd := r.Look(at, 0, 1000)
	if rd.Used != 1500 || rd.Remaining != 0 || rd.Fits {
		t.Errorf("charged 1500 of 1000: %+v; want used 1500, nothing fits, not even 0", rd)
	}
}

func TestRollingHugeLimitsDoNotOverflow(t *testing.T) {
	at := InstantOf(utc("2028-02-28T12:00:00Z"))
	r := &rollingCounter{}
	for _, n := range []int64{1, maxRate, math.MaxInt64} {
		if rd := r.Look(at, min(n, maxRate), math.MaxInt64); !rd.Fits {
			t.Errorf("%d under an enormous limit: %+v", n, rd)
		}
	}
	m := take(t, r, at, maxRate, math.MaxInt64)
	r.Settle(at, m, maxRate, math.MaxInt64, math.MaxInt64)
	if rd := r.Look(at, 1, math.MaxInt64); rd.Fits || rd.Used <= 0 {
		t.Errorf("a saturated bucket must refuse, not wrap: %+v", rd)
	}
}

func TestRollingClockSteppingBackDrainsNothing(t *testing.T) {
	t0 := utc("2028-02-28T12:00:00Z")
	r := &rollingCounter{}
	take(t, r, InstantOf(t0), 60, 60)
	if rd := r.Look(InstantOf(t0.Add(-time.Second)), 1, 60); rd.Fits {
		t.Errorf("a read from before the last take must not find room: %+v", rd)
	}
}

func TestCalendarCounterRollsAtMidnight(t *testing.T) {
	c := &calendarCounter{period: Day}
	before := InstantOf(utc("2028-02-28T23:59:59.999Z"))
	after := InstantOf(utc("2028-02-29T00:00:00Z"))
	m := take(t, c, before, 100, 100)
	rd := c.Look(before, 1, 100)
	if rd.Fits || rd.Used != 100 || rd.Held != 100 || rd.Wait != time.Millisecond || rd.Reset != utc("2028-02-29T00:00:00Z").UnixMicro() {
		t.Fatalf("at 23:59:59.999: %+v; want refused, retry in 1ms, reset at midnight", rd)
	}
	if rd := c.Look(after, 100, 100); !rd.Fits || rd.Used != 0 {
		t.Fatalf("at midnight: %+v; want a fresh day", rd)
	}
	take(t, c, after, 40, 100)
	// Yesterday's reservation settles into yesterday, not into today.
	c.Settle(after, m, 100, 90, 100)
	if rd := c.Look(after, 0, 100); rd.Used != 40 || rd.Held != 40 {
		t.Errorf("today after yesterday's settlement: %+v; want only today's 40 held", rd)
	}
}

func TestCalendarCounterTotalNeverResets(t *testing.T) {
	c := &calendarCounter{period: Total}
	at := InstantOf(utc("2028-02-28T12:00:00Z"))
	m := take(t, c, at, 100, 100)
	c.Settle(at, m, 100, 100, 100)
	far := InstantOf(utc("2040-01-01T00:00:00Z"))
	rd := c.Look(far, 1, 100)
	if rd.Fits || rd.Used != 100 || rd.Reset != 0 || rd.Wait != 0 {
		t.Errorf("total budget years later: %+v; want still spent, no reset, no retry", rd)
	}
}

func TestCalendarCounterReachedLimitRefusesFreeRequests(t *testing.T) {
	c := &calendarCounter{period: Month}
	at := InstantOf(utc("2028-02-28T12:00:00Z"))
	if !c.Look(at, 0, 100).Fits {
		t.Fatal("a free request must pass an unspent budget")
	}
	take(t, c, at, 100, 100)
	if c.Look(at, 0, 100).Fits {
		t.Error("a free request must not pass a budget that is reached")
	}
	if (&calendarCounter{period: Day}).Look(at, 0, 0).Fits {
		t.Error("a budget of 0 must refuse everything")
	}
}

func TestGauge(t *testing.T) {
	g := &gauge{}
	at := Instant{}
	take(t, g, at, 1, 2)
	take(t, g, at, 1, 2)
	rd := g.Look(at, 1, 2)
	if rd.Fits || rd.Wait != concurrencyWait || rd.Used != 2 || rd.Reset != 0 {
		t.Fatalf("two of two in flight: %+v", rd)
	}
	g.Settle(at, 0, 1, 0, 2)
	if !g.Look(at, 1, 2).Fits {
		t.Error("a settled request must free its slot")
	}
	g.Settle(at, 0, 1, 0, 2)
	g.Settle(at, 0, 1, 0, 2)
	if g.n != 0 {
		t.Errorf("gauge at %d after more releases than takes; want 0", g.n)
	}
}

// Callers read the clock before they take the lock: a request stamped
// before midnight can arrive after one stamped after it. It must count in
// the new day, not roll the counter back and drop the new day's holds.
func TestCalendarCounterNeverRollsBack(t *testing.T) {
	c := &calendarCounter{period: Day}
	early := InstantOf(utc("2028-02-28T23:59:59.999999Z"))
	late := InstantOf(utc("2028-02-29T00:00:00Z"))
	m := take(t, c, late, 70, 100)
	if rd := c.Look(early, 40, 100); rd.Fits || rd.Used != 70 {
		t.Fatalf("late arrival stamped before midnight: %+v; want it to see the new day's 70", rd)
	}
	take(t, c, early, 30, 100)
	c.Settle(late, m, 70, 70, 100)
	if rd := c.Look(late, 0, 100); rd.Used != 100 || rd.Held != 30 {
		t.Errorf("new day %+v; want 70 spent + 30 held", rd)
	}
}

func TestReserveRefusesWithoutCounting(t *testing.T) {
	at := InstantOf(utc("2028-02-28T12:00:00Z"))
	for name, c := range map[string]Counter{
		"rolling":  &rollingCounter{},
		"calendar": &calendarCounter{period: Day},
		"gauge":    &gauge{},
	} {
		take(t, c, at, 7, 10)
		before := c.Look(at, 0, 10)
		if _, ok := c.Reserve(at, 4, 10); ok {
			t.Errorf("%s: 4 more on 7 of 10 reserved", name)
		}
		if after := c.Look(at, 0, 10); after != before {
			t.Errorf("%s: a refused Reserve changed the counter: %+v → %+v", name, before, after)
		}
		// Settling at 0 at the same instant undoes a reservation exactly.
		m := take(t, c, at, 3, 10)
		c.Settle(at, m, 3, 0, 10)
		if after := c.Look(at, 0, 10); after != before {
			t.Errorf("%s: undo left %+v, want %+v", name, after, before)
		}
	}
}

// A refund moves the reservations behind it forward in the bucket. A
// later reservation's refund must count from where it really is, or it
// gives back units that have drained already and erases a newer request.
func TestRollingRefundAfterAnEarlierRefund(t *testing.T) {
	t0 := utc("2028-02-28T12:00:00Z")
	r := &rollingCounter{}
	a := take(t, r, InstantOf(t0), 600, 1000)
	b := take(t, r, InstantOf(t0), 400, 1000)
	r.Settle(InstantOf(t0), a, 600, 0, 1000) // B now drains by t0+24s
	later := InstantOf(t0.Add(30 * time.Second))
	take(t, r, later, 300, 1000)
	r.Settle(later, b, 400, 0, 1000)
	if rd := r.Look(later, 0, 1000); rd.Used != 300 {
		t.Errorf("used %d; want the newer request's 300 intact (B had drained)", rd.Used)
	}
}
