package quota

import (
	"strconv"
	"time"
)

// RateStatus is where one rate limit stands, as OpenAI's headers say it.
type RateStatus struct {
	Set       bool // some subject limits this rate; without one there are no headers
	Limit     int64
	Remaining int64
	// Reset is the time until the limit is back to its initial state
	// (the window has drained), which is what OpenAI's reset headers mean.
	Reset time.Duration
}

// RateHeaders are the values of OpenAI's x-ratelimit-* headers for one
// response, from the strictest requests-per-minute and tokens-per-minute
// limits of the request's subjects: the one with the fewest units left
// (on a tie, the one that takes longer to reset).
type RateHeaders struct {
	Requests RateStatus
	Tokens   RateStatus
}

// Header is one response header.
type Header struct{ Name, Value string }

// Append appends the headers that are set, in OpenAI's names and formats:
//
//	x-ratelimit-limit-requests: 60
//	x-ratelimit-remaining-requests: 59
//	x-ratelimit-reset-requests: 1s
//
// and the same three for tokens. Resets are Go durations as OpenAI writes
// them ("1s", "6m0s", "8.64s", "120ms"), rounded up to the millisecond.
func (h RateHeaders) Append(dst []Header) []Header {
	dst = h.Requests.append(dst, "requests")
	return h.Tokens.append(dst, "tokens")
}

func (s RateStatus) append(dst []Header, what string) []Header {
	if !s.Set {
		return dst
	}
	return append(dst,
		Header{"x-ratelimit-limit-" + what, strconv.FormatInt(s.Limit, 10)},
		Header{"x-ratelimit-remaining-" + what, strconv.FormatInt(s.Remaining, 10)},
		Header{"x-ratelimit-reset-" + what, formatReset(s.Reset)})
}

// formatReset writes d as OpenAI does, rounded up to the millisecond so that
// a client waiting that long finds the limit reset, and so that no "µs"
// reaches a header.
func formatReset(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	return ceilDuration(d, time.Millisecond).String()
}

func ceilDuration(d, unit time.Duration) time.Duration {
	if r := d % unit; r != 0 {
		return d - r + unit
	}
	return d
}

// rateHeaders reads the rate limits of locked accounts after admission.
func rateHeaders(at Instant, accts []*account) RateHeaders {
	var h RateHeaders
	for _, a := range accts {
		for _, m := range [...]Meter{RequestsPerMinute, TokensPerMinute} {
			lim := a.limits.limit(m)
			if !lim.set {
				continue
			}
			rd := a.ctr[m].Look(at, 0, lim.n)
			s := RateStatus{Set: true, Limit: lim.n, Remaining: rd.Remaining, Reset: micros(max(rd.Reset-at.Micros, 0))}
			cur := &h.Requests
			if m == TokensPerMinute {
				cur = &h.Tokens
			}
			if !cur.Set || s.Remaining < cur.Remaining || (s.Remaining == cur.Remaining && s.Reset > cur.Reset) {
				*cur = s
			}
		}
	}
	return h
}
