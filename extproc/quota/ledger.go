package quota

import (
	"time"
)

// Ledger stores counters. The engine decides; a ledger only counts. The
// local ledger (LocalLedger) counts in this process's memory; the lease
// ledger (extproc/quotalease) spends quota leased from the control plane
// behind the same interface, so admission does not change with it.
type Ledger interface {
	// Counter returns the counter of one meter of one subject. The engine
	// asks once per meter when it first meets a subject (again after it
	// forgot it), keeps the counter, and calls its methods only while it
	// holds that subject's lock: a ledger needs no lock for what the engine
	// changes, only for what it changes on its own (a lease arriving).
	Counter(s SubjectID, m Meter) Counter
	// Forget tells the ledger that the engine dropped a subject's counters
	// (Engine.Forget, or an idle subject swept away), so that a lease
	// ledger can hand back what it holds.
	Forget(s SubjectID)
}

// Counter counts one meter of one subject. Units are requests, tokens or
// micro-dollars, by meter. limit is the cap in force now, math.MaxInt64
// when none is set (spend and concurrency are counted without one, so that
// State shows them and a limit set later starts from the real usage); the
// engine never calls a rolling-window counter without a limit.
//
// A limit that has been reached refuses every request, even one that asks
// for 0 units (a free model once the budget is spent).
type Counter interface {
	// Reserve counts n units if they fit under limit, and returns a mark
	// that Settle gets back (the calendar window the units went to, or
	// where they sit in a rolling window); if they do not fit it counts
	// nothing and returns false. This is the hot path: one call per meter
	// per request, and no Reading to fill.
	Reserve(at Instant, n, limit int64) (Mark, bool)
	// Settle replaces taken units, counted by the Reserve that returned m,
	// with actual units: the difference is released, or charged when
	// actual is more. Settling with actual 0 at the instant of the Reserve
	// undoes it exactly.
	Settle(at Instant, m Mark, taken, actual, limit int64)
	// Look reads the counter and says whether n more units would fit. It
	// changes nothing. The engine reads for refusals, rate limit headers,
	// soft limits and State.
	Look(at Instant, n, limit int64) Reading
}

// Mark is a counter's note on units it took, for their settlement.
type Mark int64

// Reading is a counter's state at an instant, against a limit.
type Reading struct {
	Used      int64 // counted in the current window, held units included; above the limit after a settle above its reservation
	Held      int64 // reserved by requests not yet settled (calendar windows; a rolling window does not tell them apart)
	Remaining int64 // units that fit now
	Fits      bool  // the units asked about fit
	// Reset is when the counter is back to zero, in Unix µs: the end of a
	// calendar window, the time a rolling window has drained. 0 for a total
	// (never) or a concurrency gauge (unknown). A number rather than a
	// time.Time: readings are returned by value many times per request.
	Reset int64
	// Wait, when the units do not fit, is how long until they do; 0 when
	// waiting cannot help (a total budget, a request larger than the limit).
	Wait time.Duration
	// Window is the calendar window read (Instant.Day or Instant.Month;
	// 0 for others), so that a report can name it.
	Window int64
	// Unavailable says that the ledger could not get quota (a lease
	// ledger cut off from the control plane that fails closed), rather
	// than that the limit is reached. The local ledger never sets it.
	Unavailable bool
}

// Instant is one moment as counters see it: the time, and the UTC calendar
// windows it falls in, worked out once per call rather than once per
// counter.
type Instant struct {
	Micros int64 // Unix time in microseconds
	Day    int64 // UTC days since 1970-01-01
	Month  int64 // UTC months since January of year 0: year*12 + month - 1
}

const (
	microsPerDay    = 86_400_000_000
	microsPerMinute = 60_000_000
)

// InstantOf returns t as an Instant. UTC has no daylight saving time, and
// Unix time has no leap seconds: every day is 86,400 seconds.
func InstantOf(t time.Time) Instant {
	us := t.UnixMicro()
	y, mo, _ := t.UTC().Date()
	return Instant{Micros: us, Day: floorDiv(us, microsPerDay), Month: int64(y)*12 + int64(mo) - 1}
}

// Time returns the instant as a time in UTC, to the microsecond.
func (at Instant) Time() time.Time { return timeOf(at.Micros) }

// timeOf turns Unix µs into a time in UTC; 0 is the zero time ("never").
func timeOf(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// windowStart and windowEnd bound a calendar window of period p; the total
// window has neither (zero time).
func windowStart(p Period, w int64) time.Time {
	switch p {
	case Day:
		return time.UnixMicro(w * microsPerDay).UTC()
	case Month:
		return time.Date(int(floorDiv(w, 12)), time.Month(w-floorDiv(w, 12)*12+1), 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Time{}
}

// windowEnd is in Unix µs, 0 for a total.
func windowEnd(p Period, w int64) int64 {
	switch p {
	case Day:
		return (w + 1) * microsPerDay
	case Month:
		return windowStart(p, w+1).UnixMicro()
	}
	return 0
}

func (at Instant) window(p Period) int64 {
	switch p {
	case Day:
		return at.Day
	case Month:
		return at.Month
	}
	return 0
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// LocalLedger counts in memory, for one process: exact for one ext_proc
// replica, forgotten when it restarts.
type LocalLedger struct{}

// Counter returns a new in-memory counter for the meter.
func (LocalLedger) Counter(_ SubjectID, m Meter) Counter {
	switch {
	case m.rolling():
		return &rollingCounter{}
	case m == ConcurrentRequests:
		return &gauge{}
	}
	p, _ := m.Period()
	return &calendarCounter{period: p}
}

// Forget does nothing: the engine drops the counters.
func (LocalLedger) Forget(SubjectID) {}

// micros turns a number of microseconds into a duration.
func micros(us int64) time.Duration { return time.Duration(satMul(us, int64(time.Microsecond))) }
