package quota

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Denial is Admit's refusal: which subject's which limit refused, and when
// to come back. The caller answers 429 in the OpenAI error shape, with the
// message from Error, the type and code from OpenAIError, and the headers
// from AppendHeaders.
type Denial struct {
	Subject   SubjectID
	Meter     Meter
	Limit     int64 // the limit (a budget's hard limit)
	Used      int64 // counted against it now, reservations of requests in flight included
	Requested int64 // what this request needed of it
	Remaining int64
	// Window is the start of the day or month a budget refused in (zero
	// otherwise).
	Window time.Time
	// Reset is when the limit is back to zero: the end of the budget's day
	// or month, or when the rolling window has drained. Zero when it never
	// resets (a total budget) or nobody can tell (concurrency).
	Reset time.Time
	// RetryAfter is how long until this request would fit; 0 when waiting
	// cannot help: a total budget, or a request larger than the limit.
	RetryAfter time.Duration
	// Unavailable says that quota could not be obtained (the quota
	// authority is unreachable and the limit fails closed), not that it is
	// used up. The local ledger never refuses for that.
	Unavailable bool
	// Headers are the rate limit headers, as they stand without this
	// request.
	Headers RateHeaders
}

func (d *Denial) Error() string {
	var b strings.Builder
	who := d.Subject.String()
	switch {
	case d.Unavailable:
		fmt.Fprintf(&b, "Tollgate could not confirm the %s of %s: its quota authority is unreachable.", describe(d.Meter), who)
	case d.Meter == RequestsPerMinute || d.Meter == TokensPerMinute:
		if d.RetryAfter == 0 {
			fmt.Fprintf(&b, "Request too large for %s on %s: Limit %d, Requested %d. Lower the prompt or max_tokens.",
				describe(d.Meter), who, d.Limit, d.Requested)
		} else {
			fmt.Fprintf(&b, "Rate limit reached for %s on %s: Limit %d, Used %d, Requested %d.",
				describe(d.Meter), who, d.Limit, d.Used, d.Requested)
		}
	case d.Meter == ConcurrentRequests:
		fmt.Fprintf(&b, "Too many concurrent requests for %s: Limit %d.", who, d.Limit)
	default:
		fmt.Fprintf(&b, "The %s of %s (%s) does not cover this request: used %s, this request may cost up to %s.",
			describe(d.Meter), who, dollars(d.Limit), dollars(d.Used), dollars(d.Requested))
		switch {
		case d.Reset.IsZero():
			b.WriteString(" It does not reset; an administrator can raise it.")
		case d.RetryAfter == 0:
			b.WriteString(" Lower max_tokens or ask an administrator to raise it.")
		default:
			fmt.Fprintf(&b, " It resets at %s.", d.Reset.UTC().Format(time.RFC3339))
		}
		return b.String()
	}
	if d.RetryAfter > 0 {
		fmt.Fprintf(&b, " Please try again in %s.", formatReset(d.RetryAfter))
	}
	return b.String()
}

// OpenAIError returns the error type and code OpenAI uses for this kind of
// refusal: rate limits are "rate_limit_exceeded" (of type "requests" or
// "tokens"), a spent budget is "insufficient_quota".
func (d *Denial) OpenAIError() (typ, code string) {
	switch d.Meter {
	case RequestsPerMinute, ConcurrentRequests:
		return "requests", "rate_limit_exceeded"
	case TokensPerMinute:
		return "tokens", "rate_limit_exceeded"
	}
	return "insufficient_quota", "insufficient_quota"
}

// AppendHeaders appends the response headers of the refusal: retry-after
// in whole seconds (rounded up) and retry-after-ms, which OpenAI's SDKs
// prefer, when retrying can help; then the rate limit headers.
func (d *Denial) AppendHeaders(dst []Header) []Header {
	if d.RetryAfter > 0 {
		secs := ceilDuration(d.RetryAfter, time.Second) / time.Second
		ms := ceilDuration(d.RetryAfter, time.Millisecond) / time.Millisecond
		dst = append(dst,
			Header{"retry-after", strconv.FormatInt(int64(secs), 10)},
			Header{"retry-after-ms", strconv.FormatInt(int64(ms), 10)})
	}
	return d.Headers.Append(dst)
}

func describe(m Meter) string {
	switch m {
	case RequestsPerMinute:
		return "requests per minute (RPM)"
	case TokensPerMinute:
		return "tokens per minute (TPM)"
	case ConcurrentRequests:
		return "concurrent requests"
	case DaySpend:
		return "daily budget"
	case MonthSpend:
		return "monthly budget"
	case TotalSpend:
		return "total budget"
	}
	return m.String()
}

// dollars writes micro-dollars as dollars with six decimals, in integers.
func dollars(micros int64) string {
	sign := ""
	if micros < 0 {
		sign, micros = "-", -micros
	}
	return fmt.Sprintf("%s$%d.%06d", sign, micros/1_000_000, micros%1_000_000)
}

// EventKind says what happened.
type EventKind uint8

const (
	// SoftLimitReached: the spend settled in a budget's window reached its
	// soft limit. Reported once per window; the caller writes an audit
	// event and flags the tenant.
	SoftLimitReached EventKind = iota + 1
	// ReservationExpired: Sweep settled a reservation that its caller
	// never settled, at its reserved cost. A bug to log.
	ReservationExpired
)

func (k EventKind) String() string {
	switch k {
	case SoftLimitReached:
		return "soft_limit_reached"
	case ReservationExpired:
		return "reservation_expired"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is something the caller should record; the engine does no I/O.
type Event struct {
	Kind    EventKind
	Subject SubjectID
	Meter   Meter // the budget whose soft limit was reached
	Limit   int64 // the soft limit
	// Used is the spend settled in the window when the soft limit was
	// reached, or the micro-dollars an expired reservation was charged.
	Used   int64
	Window time.Time // start of the budget's day or month; zero for a total budget
	At     time.Time
}
