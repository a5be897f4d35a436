package quota

import (
	"sync/atomic"
)

// Reservation is what Admit reserved for one request. Settle or Release
// it exactly once when the request is over; later calls do nothing. Until
// then it holds a concurrency slot, its tokens and its worst-case cost.
type Reservation struct {
	e *Engine
	holding
	cost     Cost
	admitted int64 // µs
	headers  RateHeaders
	done     atomic.Bool

	prev, next *Reservation // in accts[0].open, under its lock
}

// Cost is what was reserved.
func (r *Reservation) Cost() Cost { return r.cost }

// Headers are the rate limit headers for the admitted request's response,
// as they stood once it was admitted.
func (r *Reservation) Headers() RateHeaders { return r.headers }

// Settle replaces the reservation with the request's actual usage: tokens
// and spend below the reservation are released, above it are charged
// (spend is never dropped, even past a hard limit: the next request is
// refused instead). The concurrency slot is freed; the request stays
// counted against requests per minute. A stream cut short is settled at
// what was used, as far as the caller could tell.
//
// It returns the events this settlement caused (a soft limit reached),
// usually none. Only the first Settle or Release of a reservation counts.
func (r *Reservation) Settle(actual Cost) []Event { return r.settle(actual.clamp(), false) }

// Release ends a reservation for a request that never reached a provider:
// it is charged no tokens and no money, but still counts as a request for
// requests per minute (a client cannot make a refused or failed request
// for free, over and over).
func (r *Reservation) Release() []Event { return r.settle(Cost{}, false) }

func (r *Reservation) settle(actual Cost, expired bool) []Event {
	if !r.done.CompareAndSwap(false, true) {
		return nil
	}
	at := InstantOf(r.e.now())
	for i := range r.n {
		r.accts[i].mu.Lock()
	}
	var events []Event
	for i := range int(r.n) {
		a := r.accts[i]
		for m := range numMeters {
			if r.took[i]&(1<<m) == 0 || m == RequestsPerMinute {
				continue
			}
			lim := a.limits.limit(m)
			if m.rolling() && !lim.set {
				continue // the limit was lifted meanwhile: the meter is no longer counted
			}
			taken, used := r.cost.of(m), actual.of(m)
			if m == ConcurrentRequests {
				used = 0
			}
			a.ctr[m].Settle(at, r.marks[i][m], taken, used, lim.orMax())
			if _, ok := m.Period(); ok && used > 0 {
				events = a.checkSoft(at, m, events) // only spend can reach a soft limit
			}
		}
		a.inflight--
		a.lastUsed = max(a.lastUsed, at.Micros)
		if expired {
			events = append(events, Event{Kind: ReservationExpired, Subject: a.id, Used: r.cost.Micros, At: at.Time()})
		}
	}
	r.accts[0].unlink(r)
	for i := int(r.n) - 1; i >= 0; i-- {
		r.accts[i].mu.Unlock()
	}
	return events
}
