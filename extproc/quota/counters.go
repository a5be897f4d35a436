package quota

import (
	"math"
	"time"
)

// maxRate caps a rolling limit at 10^11 units per window, so that a full
// bucket (limit × window in µs, at most 6·10^18) fits in an int64. A limit
// above it is a limit of 10^11: 1.6 billion tokens a second is no limit.
const maxRate = 100_000_000_000

// rollingCounter is a rate limit over a rolling window as the generic cell
// rate algorithm (GCRA), i.e. a token bucket that holds `limit` units and
// refills continuously at `limit` per window (docs/policy.md says why this
// algorithm). Its state is the bucket's debt: units taken and not yet
// refilled, in units × µs, which drains by `limit` per µs. Integer
// arithmetic throughout, so that tests can expect exact values.
type rollingCounter struct {
	window int64 // µs
	debt   int64 // units × µs still to drain; above limit × window after a settle above its reservation
	at     int64 // µs at which debt was last brought up to date
}

func rate(limit int64) int64 { return min(max(limit, 0), maxRate) }

// level is the debt at now, for the drain rate l. A clock that steps back
// (callers' goroutines read it at slightly different moments) drains
// nothing.
func (r *rollingCounter) level(now, l int64) int64 {
	if now <= r.at || r.debt == 0 || l == 0 {
		return r.debt
	}
	dt := now - r.at
	if dt >= ceilDiv(r.debt, l) {
		return 0
	}
	return r.debt - dt*l // dt < debt/l: no overflow
}

func (r *rollingCounter) Look(at Instant, n, limit int64) Reading {
	l := rate(limit)
	d := r.level(at.Micros, l)
	full := l * r.window
	rd := Reading{Used: ceilDiv(d, r.window), Reset: at.Time()}
	if d < full {
		rd.Remaining = (full - d) / r.window
	}
	if l > 0 {
		rd.Reset = rd.Reset.Add(micros(ceilDiv(d, l)))
	}
	rd.Fits = n <= l && d <= full-n*r.window && (n > 0 || d < full)
	if !rd.Fits && n <= l && l > 0 {
		// Until the debt has drained to where n units fit.
		rd.Wait = max(micros(ceilDiv(d-(full-n*r.window), l)), time.Microsecond)
	}
	return rd
}

// Take adds n units and marks where they end in the bucket: the time at
// which the bucket, draining first in first out, will have drained them.
func (r *rollingCounter) Take(at Instant, n, limit int64) Mark {
	l := rate(limit)
	r.debt = satAdd(r.level(at.Micros, l), satMul(n, r.window))
	r.at = max(r.at, at.Micros)
	if l == 0 {
		return Mark(math.MaxInt64)
	}
	return Mark(satAdd(r.at, ceilDiv(r.debt, l)))
}

// Settle charges units above the reservation now, and refunds units below
// it only as far as the reservation has not drained yet: once the window
// has moved past a request's tokens they are spent whatever they were, and
// a larger refund would erase later requests' usage.
func (r *rollingCounter) Settle(at Instant, m Mark, taken, actual, limit int64) {
	l := rate(limit)
	d := r.level(at.Micros, l)
	r.at = max(r.at, at.Micros)
	if actual >= taken {
		r.debt = satAdd(d, satMul(actual-taken, r.window))
		return
	}
	undrained := min(satMul(max(int64(m)-r.at, 0), l), satMul(taken, r.window))
	refund := min(satMul(taken-actual, r.window), undrained)
	r.debt = max(d-refund, 0)
}

// gauge counts requests in flight.
type gauge struct{ n int64 }

// concurrencyWait is the retry-after of a request refused for concurrency:
// a slot frees when another request ends, which nobody can predict.
const concurrencyWait = time.Second

func (g *gauge) Look(_ Instant, n, limit int64) Reading {
	rd := Reading{Used: g.n, Remaining: max(limit-g.n, 0)}
	rd.Fits = n <= rd.Remaining && (n > 0 || g.n < limit)
	if !rd.Fits && n <= limit {
		rd.Wait = concurrencyWait
	}
	return rd
}

func (g *gauge) Take(_ Instant, n, _ int64) Mark { g.n = satAdd(g.n, n); return 0 }

func (g *gauge) Settle(_ Instant, _ Mark, taken, actual, _ int64) {
	g.n = max(satAdd(g.n, actual-taken), 0)
}

// calendarCounter counts spend in UTC calendar windows (day, month) or in
// total. Units held by requests in flight count against the limit with the
// ones spent.
type calendarCounter struct {
	period Period
	win    int64 // the window counted
	spent  int64
	held   int64
}

// window is the window at falls in, as this counter sees it: windows only
// move forward. Callers read the clock before they take the lock, so a
// request stamped 23:59:59.999 can arrive after one stamped 00:00; it
// counts in the new day rather than rolling the counter back (which would
// drop the new day's reservations).
func (c *calendarCounter) window(at Instant) int64 { return max(at.window(c.period), c.win) }

// roll starts a new window when at is past the one counted. Reservations
// taken in the old window settle into it, which has closed: the spend of a
// request belongs to the day (month) it started in, as its usage record.
func (c *calendarCounter) roll(at Instant) {
	if w := c.window(at); w != c.win {
		c.win, c.spent, c.held = w, 0, 0
	}
}

func (c *calendarCounter) Look(at Instant, n, limit int64) Reading {
	w := c.window(at)
	rd := Reading{Window: w, Reset: windowEnd(c.period, w)}
	if w == c.win {
		rd.Used, rd.Held = satAdd(c.spent, c.held), c.held
	}
	rd.Remaining = max(limit-rd.Used, 0)
	rd.Fits = n <= rd.Remaining && (n > 0 || rd.Used < limit)
	if !rd.Fits && c.period != Total && n <= limit {
		rd.Wait = max(rd.Reset.Sub(at.Time()), time.Microsecond)
	}
	return rd
}

func (c *calendarCounter) Take(at Instant, n, _ int64) Mark {
	c.roll(at)
	c.held = satAdd(c.held, n)
	return Mark(c.win)
}

func (c *calendarCounter) Settle(at Instant, m Mark, taken, actual, _ int64) {
	c.roll(at)
	if int64(m) != c.win {
		return
	}
	c.held = max(c.held-taken, 0)
	c.spent = satAdd(c.spent, actual)
}

// Saturating arithmetic: a counter stuck at the maximum refuses; one that
// wrapped around would admit everything.
func satAdd(a, b int64) int64 {
	s := a + b
	if a > 0 && b > 0 && s < 0 {
		return math.MaxInt64
	}
	if a < 0 && b < 0 && s >= 0 {
		return math.MinInt64
	}
	return s
}

func satMul(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a < 0 || b < 0 {
		// Only non-negative products are needed here.
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

// ceilDiv divides non-negative a by positive b, rounding up.
func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	return (a-1)/b + 1
}
