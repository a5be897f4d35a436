package quota

import (
	"math"
	"math/bits"
	"time"
)

// maxRate caps a rolling limit at 10^11 units per window, so that a full
// bucket (limit × window in µs, at most 6·10^18) fits in an int64. A limit
// above it is a limit of 10^11: 1.6 billion tokens a second is no limit.
const maxRate = 100_000_000_000

// window is the length of every rolling window, in µs. A constant, so that
// dividing by it costs a multiplication.
const window = microsPerMinute

// rollingCounter is a rate limit over a rolling window as the generic cell
// rate algorithm (GCRA), i.e. a token bucket that holds `limit` units and
// refills continuously at `limit` per window (docs/policy.md says why this
// algorithm). Its state is the bucket's debt, units taken and not yet
// refilled, in units × µs; it drains by `limit` per µs. Integer arithmetic
// throughout, so that tests can expect exact values.
//
// The debt is kept as two running totals, in (added) and out (drained or
// refunded), so that a reservation can be placed in the bucket's queue: its
// Mark is `in` just after it was added, and the part of it not yet drained
// is mark − out. Refunds of reservations ahead of it move it forward, as
// they should; refunds of ones behind it do too, which can only make a
// later refund smaller than exact, never larger. Both totals wrap around
// (uint64); only their differences are used, which stay below 2^63.
type rollingCounter struct {
	in, out uint64
	at      int64 // µs up to which the drain is in `out`
}

func rate(limit int64) int64 { return min(max(limit, 0), maxRate) }

func (r *rollingCounter) debt() int64 { return int64(r.in - r.out) }

// drained is how much of the debt d drains from r.at to now at rate l. A
// clock that steps back (callers read it before they take the lock) drains
// nothing.
func (r *rollingCounter) drained(now, l, d int64) int64 {
	if now <= r.at || d == 0 || l == 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(now-r.at), uint64(l))
	if hi != 0 || lo >= uint64(d) {
		return d
	}
	return int64(lo)
}

// drain brings the debt up to now.
func (r *rollingCounter) drain(now, l int64) int64 {
	d := r.debt()
	x := r.drained(now, l, d)
	r.out += uint64(x)
	r.at = max(r.at, now)
	return d - x
}

// fits says whether n units fit on a debt of d at rate l: a full bucket
// (or one above full) refuses even 0 units.
func fitsBucket(d, n, l int64) bool {
	full := l * window
	return n <= l && d <= full-n*window && (n > 0 || d < full)
}

func (r *rollingCounter) Look(at Instant, n, limit int64) Reading {
	l := rate(limit)
	d := r.debt()
	d -= r.drained(at.Micros, l, d)
	full := l * window
	rd := Reading{Used: ceilDiv(d, window), Reset: at.Micros, Fits: fitsBucket(d, n, l)}
	if d < full {
		rd.Remaining = (full - d) / window
	}
	if l > 0 {
		rd.Reset = satAdd(rd.Reset, ceilDiv(d, l))
	}
	if !rd.Fits && n <= l && l > 0 {
		// Until the debt has drained to where n units fit.
		rd.Wait = max(micros(ceilDiv(d-(full-n*window), l)), time.Microsecond)
	}
	return rd
}

func (r *rollingCounter) Reserve(at Instant, n, limit int64) (Mark, bool) {
	l := rate(limit)
	if !fitsBucket(r.drain(at.Micros, l), n, l) {
		return 0, false
	}
	r.in += uint64(n * window) // fits: at most a full bucket, no overflow
	return Mark(r.in), true
}

// Settle charges units above the reservation at the back of the bucket, and
// refunds units below it only as far as the reservation has not drained:
// once the window has moved past a request's tokens they are spent,
// whatever they were, and a larger refund would erase later requests'
// usage.
func (r *rollingCounter) Settle(at Instant, m Mark, taken, actual, limit int64) {
	d := r.drain(at.Micros, rate(limit))
	if actual >= taken {
		r.in += uint64(min(satMul(actual-taken, window), math.MaxInt64-d))
		return
	}
	undrained := min(max(int64(uint64(m)-r.out), 0), satMul(taken, window))
	r.out += uint64(min(satMul(taken-actual, window), undrained))
}

// gauge counts requests in flight.
type gauge struct{ n int64 }

// concurrencyWait is the retry-after of a request refused for concurrency:
// a slot frees when another request ends, which nobody can predict.
const concurrencyWait = time.Second

// fits says whether n units fit on used under limit: a limit that is
// reached refuses even 0 units.
func fits(used, n, limit int64) bool { return n <= limit-used && (n > 0 || used < limit) }

func (g *gauge) Look(_ Instant, n, limit int64) Reading {
	rd := Reading{Used: g.n, Remaining: max(limit-g.n, 0), Fits: fits(g.n, n, limit)}
	if !rd.Fits && n <= limit {
		rd.Wait = concurrencyWait
	}
	return rd
}

func (g *gauge) Reserve(_ Instant, n, limit int64) (Mark, bool) {
	if !fits(g.n, n, limit) {
		return 0, false
	}
	g.n += n
	return 0, true
}

func (g *gauge) Settle(_ Instant, _ Mark, taken, actual, _ int64) {
	g.n = max(satAdd(g.n, actual-taken), 0)
}

// calendarCounter counts spend in UTC calendar windows (day, month) or in
// total. Units held by requests in flight count against the limit with the
// ones spent.
type calendarCounter struct {
	period Period
	win    int64 // the window counted
	end    int64 // its end in Unix µs, worked out once per window (0: not yet, or a total)
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
		c.win, c.end, c.spent, c.held = w, windowEnd(c.period, w), 0, 0
	}
}

func (c *calendarCounter) Look(at Instant, n, limit int64) Reading {
	w := c.window(at)
	rd := Reading{Window: w}
	if w == c.win {
		rd.Used, rd.Held = satAdd(c.spent, c.held), c.held
		if c.end == 0 {
			c.end = windowEnd(c.period, w) // a new counter: window 0 was never rolled into
		}
		rd.Reset = c.end
	} else {
		rd.Reset = windowEnd(c.period, w)
	}
	rd.Remaining = max(limit-rd.Used, 0)
	rd.Fits = fits(rd.Used, n, limit)
	if !rd.Fits && c.period != Total && n <= limit {
		rd.Wait = max(micros(rd.Reset-at.Micros), time.Microsecond)
	}
	return rd
}

func (c *calendarCounter) Reserve(at Instant, n, limit int64) (Mark, bool) {
	c.roll(at)
	if !fits(satAdd(c.spent, c.held), n, limit) {
		return 0, false
	}
	c.held += n
	return Mark(c.win), true
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
