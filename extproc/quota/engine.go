package quota

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// MaxSubjects is how many subjects one request can be checked against.
const MaxSubjects = 4

// ErrSubjects is returned by Admit for a request with no subject, more than
// MaxSubjects, or one subject twice: a caller's mistake, not a refusal.
var ErrSubjects = errors.New("quota: a request needs between 1 and 4 distinct subjects")

// Options configure an Engine.
type Options struct {
	// Ledger stores the counters; LocalLedger when nil.
	Ledger Ledger
	// Now is the clock that Settle, Release, State and Sweep read (Admit
	// is given the time); time.Now when nil.
	Now func() time.Time
	// MaxHold is how long a reservation may stay unsettled before Sweep
	// settles it at its reserved cost; one hour when zero. It only
	// catches a caller's bug: every admitted request is settled.
	MaxHold time.Duration
	// IdleAfter is how long a subject must be unused before Sweep may drop
	// its counters, once nothing that a limit counts is left in them; ten
	// minutes when zero.
	IdleAfter time.Duration
}

// Engine admits requests against their subjects' limits. It is safe for
// concurrent use. Each subject's counters have their own lock, so requests
// of different tenants never wait for each other; a request takes its
// subjects' locks in one global order (the order in which the engine met
// them), so two requests never wait for each other in a cycle.
type Engine struct {
	ledger    Ledger
	now       func() time.Time
	maxHold   int64 // µs
	idleAfter int64 // µs

	accounts sync.Map   // SubjectID → *account
	create   sync.Mutex // one account per subject, and one ledger call per counter
	seq      atomic.Uint64
}

// New returns an Engine.
func New(o Options) *Engine {
	e := &Engine{ledger: o.Ledger, now: o.Now, maxHold: o.MaxHold.Microseconds(), idleAfter: o.IdleAfter.Microseconds()}
	if e.ledger == nil {
		e.ledger = LocalLedger{}
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.maxHold <= 0 {
		e.maxHold = time.Hour.Microseconds()
	}
	if e.idleAfter <= 0 {
		e.idleAfter = (10 * time.Minute).Microseconds()
	}
	return e
}

// account is one subject's counters and what the engine keeps beside them.
type account struct {
	mu       sync.Mutex
	order    uint64 // lock order
	id       SubjectID
	limits   Limits // as of the latest Admit: what Settle and Sweep apply
	ctr      [numMeters]Counter
	soft     [numPeriods]softMark
	open     *Reservation // unsettled reservations whose first account (in lock order) this is
	inflight int64        // unsettled reservations that include this account
	lastUsed int64        // µs
	gone     bool         // dropped from the engine's map; a request that finds it gone looks again
}

// softMark remembers the soft limit reported in a window, so that it is
// reported once per window (again only if the limit is raised and then
// reached).
type softMark struct {
	fired bool
	win   int64
	level int64
}

func (e *Engine) account(id SubjectID) *account {
	if v, ok := e.accounts.Load(id); ok {
		return v.(*account)
	}
	e.create.Lock()
	defer e.create.Unlock()
	if v, ok := e.accounts.Load(id); ok {
		return v.(*account)
	}
	a := &account{order: e.seq.Add(1), id: id}
	for m := range numMeters {
		a.ctr[m] = e.ledger.Counter(id, m)
	}
	e.accounts.Store(id, a)
	return a
}

// testHookBeforeLock runs between finding a request's accounts and
// locking them, where Sweep or Forget may drop one; tests set it.
var testHookBeforeLock func()

// lockSet holds the accounts of one request, locked, in lock order.
type lockSet struct {
	accts [MaxSubjects]*account
	pos   [MaxSubjects]uint8 // index in the request's subjects of each account
	n     int
}

func (e *Engine) lockSubjects(subjects []Subject, ls *lockSet) error {
	n := len(subjects)
	if n == 0 || n > MaxSubjects {
		return ErrSubjects
	}
	ls.n = n
	for {
		for i := range n {
			ls.accts[i], ls.pos[i] = e.account(subjects[i].SubjectID()), uint8(i)
		}
		for i := 1; i < n; i++ {
			for j := i; j > 0 && ls.accts[j].order < ls.accts[j-1].order; j-- {
				ls.accts[j], ls.accts[j-1] = ls.accts[j-1], ls.accts[j]
				ls.pos[j], ls.pos[j-1] = ls.pos[j-1], ls.pos[j]
			}
		}
		for i := 1; i < n; i++ {
			if ls.accts[i] == ls.accts[i-1] {
				return ErrSubjects
			}
		}
		if testHookBeforeLock != nil {
			testHookBeforeLock()
		}
		gone := false
		for i := range n {
			ls.accts[i].mu.Lock()
			gone = gone || ls.accts[i].gone
		}
		if !gone {
			return nil
		}
		ls.unlock()
	}
}

func (ls *lockSet) unlock() {
	for i := ls.n - 1; i >= 0; i-- {
		ls.accts[i].mu.Unlock()
	}
}

// Admit checks a request against every limit of every subject and, if all
// of them admit it, reserves in one step, under all the subjects' locks:
// one request, c.Tokens tokens, one concurrency slot and c.Micros of every
// budget. If any limit refuses, nothing is reserved, and the error is a
// *Denial naming the limit that refuses longest (a key's stricter limit
// wins over its tenant's looser one, and the other way round).
//
// c is the worst case: the prompt's tokens plus the request's maximum
// output tokens, and their price. The caller settles every reservation it
// gets, with Settle once the response is over or Release if the request
// never reached a provider.
func (e *Engine) Admit(now time.Time, subjects []Subject, c Cost) (*Reservation, error) {
	var ls lockSet
	if err := e.lockSubjects(subjects, &ls); err != nil {
		return nil, err
	}
	defer ls.unlock()
	c = c.clamp()
	at := InstantOf(now)

	for i := range ls.n {
		ls.accts[i].limits = subjects[ls.pos[i]].Limits
	}
	h := holding{accts: ls.accts, n: uint8(ls.n)}
	for i := range ls.n {
		a := ls.accts[i]
		for m := range numMeters {
			lim := a.limits.limit(m)
			if m.rolling() && !lim.set {
				continue
			}
			mk, ok := a.ctr[m].Reserve(at, c.of(m), lim.orMax())
			if !ok {
				// Undone before any lock is released: no other request
				// ever sees these units.
				h.undo(at, i, c)
				return nil, e.refuse(at, c, &ls, refusal{a: a, m: m, limit: lim.n})
			}
			h.marks[i][m] = mk
			h.took[i] |= 1 << m
		}
	}
	r := &Reservation{e: e, holding: h, cost: c, admitted: at.Micros}
	for i := range ls.n {
		ls.accts[i].inflight++
		ls.accts[i].lastUsed = max(ls.accts[i].lastUsed, at.Micros)
	}
	ls.accts[0].link(r)
	r.headers = rateHeaders(at, ls.accts[:ls.n])
	return r, nil
}

// holding is what a request has reserved, and where.
type holding struct {
	accts [MaxSubjects]*account // in lock order
	n     uint8
	took  [MaxSubjects]uint8 // per account, a bit per meter that Reserve counted
	marks [MaxSubjects][numMeters]Mark
}

// undo gives back what a refused request reserved on its first accounts,
// up to and including account last, at the instant it reserved them.
func (h *holding) undo(at Instant, last int, c Cost) {
	for i := range last + 1 {
		a := h.accts[i]
		for m := range numMeters {
			if h.took[i]&(1<<m) != 0 {
				a.ctr[m].Settle(at, h.marks[i][m], c.of(m), 0, a.limits.limit(m).orMax())
			}
		}
	}
}

// refuse reads every limit of a refused request to name the one that
// refuses longest. Refusals are the rare path; admission itself reads
// nothing it does not need.
//
// first is the limit whose Reserve refused. A ledger that changes on its own
// (a lease arriving) may read as fitting a moment later; the request is
// refused all the same, by that limit, with a short retry-after.
func (e *Engine) refuse(at Instant, c Cost, ls *lockSet, first refusal) *Denial {
	var worst refusal
	for i := range ls.n {
		a := ls.accts[i]
		for m := range numMeters {
			lim := a.limits.limit(m)
			if m.rolling() && !lim.set {
				continue
			}
			if rd := a.ctr[m].Look(at, c.of(m), lim.orMax()); !rd.Fits {
				worst.consider(refusal{a: a, m: m, rd: rd, limit: lim.n})
			}
		}
	}
	if worst.a == nil {
		worst = first
		worst.rd = first.a.ctr[first.m].Look(at, c.of(first.m), first.a.limits.limit(first.m).orMax())
		worst.rd.Wait = max(worst.rd.Wait, retryRace)
	}
	return worst.denial(at, c, ls)
}

// retryRace is the retry-after of a refusal that a ledger no longer
// confirms: try again soon.
const retryRace = 100 * time.Millisecond

// refusal is one limit that does not admit a request.
type refusal struct {
	a     *account
	m     Meter
	rd    Reading
	limit int64
}

// consider keeps the refusal that lasts longest: one that waiting cannot
// end, else the longest wait. Retrying before that would be refused again.
func (w *refusal) consider(r refusal) {
	switch {
	case w.a == nil:
	case w.rd.Wait == 0:
		return
	case r.rd.Wait != 0 && r.rd.Wait <= w.rd.Wait:
		return
	}
	*w = r
}

func (w *refusal) denial(at Instant, c Cost, ls *lockSet) *Denial {
	d := &Denial{
		Subject:     w.a.id,
		Meter:       w.m,
		Limit:       w.limit,
		Used:        w.rd.Used,
		Requested:   c.of(w.m),
		Remaining:   w.rd.Remaining,
		Reset:       timeOf(w.rd.Reset),
		RetryAfter:  w.rd.Wait,
		Unavailable: w.rd.Unavailable,
		Headers:     rateHeaders(at, ls.accts[:ls.n]),
	}
	if p, ok := w.m.Period(); ok && p != Total {
		d.Window = windowStart(p, w.rd.Window)
	}
	return d
}

func (a *account) link(r *Reservation) {
	r.next = a.open
	if a.open != nil {
		a.open.prev = r
	}
	a.open = r
}

func (a *account) unlink(r *Reservation) {
	switch {
	case r.prev != nil:
		r.prev.next = r.next
	case a.open == r:
		a.open = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	}
	r.prev, r.next = nil, nil
}

// checkSoft reports a budget's soft limit, once per window, when the spend
// settled in the window has reached it. Held units do not count: a
// reservation is a worst case, and most are settled far below it.
func (a *account) checkSoft(at Instant, m Meter, events []Event) []Event {
	p, _ := m.Period()
	soft := a.limits.Budgets[p].Soft
	if !soft.set {
		return events
	}
	rd := a.ctr[m].Look(at, 0, soft.n)
	spent := rd.Used - rd.Held
	if spent <= 0 || spent < soft.n {
		return events
	}
	mk := &a.soft[p]
	if mk.fired && mk.win == rd.Window && soft.n <= mk.level {
		return events
	}
	*mk = softMark{fired: true, win: rd.Window, level: soft.n}
	return append(events, Event{
		Kind: SoftLimitReached, Subject: a.id, Meter: m, Limit: soft.n, Used: spent,
		Window: windowStart(p, rd.Window), At: at.Time(),
	})
}

// atRest reports whether the account's counters hold nothing that a limit
// of its (latest) policy counts, so that dropping them loses nothing that
// is enforced. A subject whose policy then gains a budget starts that
// budget from zero: docs/policy.md says why that is acceptable for the
// local ledger.
func (a *account) atRest(at Instant) bool {
	for m := range numMeters {
		lim := a.limits.limit(m)
		counted := lim.set
		if p, ok := m.Period(); ok {
			counted = counted || a.limits.Budgets[p].Soft.set
		}
		if m.rolling() && !lim.set {
			continue
		}
		if (counted || m == ConcurrentRequests) && a.ctr[m].Look(at, 0, lim.orMax()).Used > 0 {
			return false
		}
	}
	return true
}

// Sweep settles reservations held longer than MaxHold at their reserved
// cost (the request may have spent it: spend is never dropped) and drops
// the counters of subjects idle for IdleAfter that hold nothing a limit
// counts. The caller runs it every few seconds to a minute, and writes
// the events it returns.
func (e *Engine) Sweep() []Event {
	at := InstantOf(e.now())
	var expired []*Reservation
	var dropped []SubjectID
	e.accounts.Range(func(k, v any) bool {
		a := v.(*account)
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.gone {
			return true
		}
		for r := a.open; r != nil; r = r.next {
			if at.Micros-r.admitted >= e.maxHold {
				expired = append(expired, r)
			}
		}
		if a.inflight == 0 && at.Micros-a.lastUsed >= e.idleAfter && a.atRest(at) {
			a.gone = true
			e.accounts.CompareAndDelete(k, a)
			dropped = append(dropped, a.id)
		}
		return true
	})
	for _, id := range dropped {
		e.ledger.Forget(id)
	}
	var events []Event
	for _, r := range expired {
		events = append(events, r.settle(r.cost, true)...)
	}
	return events
}

// Forget drops a subject's counters: its key was deleted, its tenant
// removed. Reservations still open settle into the dropped counters.
func (e *Engine) Forget(id SubjectID) {
	v, ok := e.accounts.Load(id)
	if !ok {
		return
	}
	a := v.(*account)
	a.mu.Lock()
	a.gone = true
	e.accounts.CompareAndDelete(id, a)
	a.mu.Unlock()
	e.ledger.Forget(id)
}

// MeterState is one meter of a subject, for the admin API.
type MeterState struct {
	Meter     Meter
	Limit     Limit // the limit; a budget's hard limit
	Soft      Limit // a budget's soft limit
	Used      int64 // held units included
	Held      int64 // reserved by requests in flight (budgets)
	Remaining int64 // 0 without a limit
	// Reset is when the meter is back to zero: the end of a day or month,
	// the moment a rolling window has drained. Zero for a total budget
	// (never) and for concurrency.
	Reset time.Time
}

// State is a subject's meters.
type State struct {
	Subject SubjectID
	Meters  []MeterState // one per meter, in Meter order
}

// State reads a subject's meters against the limits given (its policy's
// now). A subject the engine has not met, or has dropped, reads as unused.
// Rates are counted only while a limit is set, so without one they read 0.
func (e *Engine) State(s Subject) State {
	at := InstantOf(e.now())
	id := s.SubjectID()
	st := State{Subject: id, Meters: make([]MeterState, numMeters)}
	var a *account
	if v, ok := e.accounts.Load(id); ok {
		a = v.(*account)
		a.mu.Lock()
		defer a.mu.Unlock()
	}
	for m := range numMeters {
		lim := s.Limits.limit(m)
		ms := MeterState{Meter: m, Limit: lim}
		if p, ok := m.Period(); ok {
			ms.Soft = s.Limits.Budgets[p].Soft
		}
		var rd Reading
		switch {
		case m.rolling() && !lim.set:
		case a != nil:
			rd = a.ctr[m].Look(at, 0, lim.orMax())
		default:
			rd = LocalLedger{}.Counter(id, m).Look(at, 0, lim.orMax())
		}
		ms.Used, ms.Held, ms.Reset = rd.Used, rd.Held, timeOf(rd.Reset)
		if lim.set {
			ms.Remaining = rd.Remaining
		}
		st.Meters[m] = ms
	}
	return st
}
