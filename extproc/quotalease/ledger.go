// Package quotalease is the quota.Ledger of an ext_proc replica that shares
// its limits with other replicas: the control plane's quota authority
// (controlplane/quotaauthority, tollgate.quota.v1.QuotaService) keeps the
// count, and this ledger spends units leased from it.
//
// Each leased counter (a subject's requests or tokens per minute, its
// daily, monthly or total budget, or its concurrent requests, in one
// window) has a slot: the lease of
// that window. Reserve takes units from the slot with no remote call while
// it holds enough; a background loop renews a slot before it runs low (below
// half of its last grant) or its lease nears expiry, reporting what was
// settled, and returns what is left when the window is over, when the
// engine forgets the subject, and on Close. Only when a slot cannot cover a
// request does Reserve wait for the authority (up to AcquireTimeout), under
// the engine's lock on that subject: that is the uncommon path.
//
// Every counter also counts locally (the local ledger's counter), which
// keeps each replica's rolling window (GCRA) for rates and the windows,
// marks and readings for budgets; the lease is an extra condition on top.
// Spend without a budget, and concurrency without a limit, are counted only
// locally.
//
// Concurrency is leased in one window (the Unix epoch): a request takes 1
// unit from the slot and settles at 0 when it ends, so the unit is free in
// the slot again; the slot's in-flight units are this replica's
// concurrency, and the authority grants only while the replicas' leases
// fit under the limit. A slot with requests in flight is renewed every
// third of its TTL even when it has no free units, so that the authority
// does not reclaim (and hand to another replica) slots still running.
//
// When the authority is unreachable, a slot spends what its lease holds
// until the lease's expiry; after that budgets fail closed (a refusal with
// Reading.Unavailable), and rates and concurrency fail closed or, with
// RateFailOpen, are enforced locally (the rolling window, the gauge) at
// limit/N, N the number of replicas holding leases on the counter as last
// seen.
//
// Reports are cumulative (settled so far, in flight now), so resending one
// is harmless; each carries a sequence number, and the authority applies
// them in order. A lease that expired at the authority (this replica was cut
// off longer than its lease) is replaced by a new one that carries the
// usage the authority did not see.
package quotalease

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	quotav1 "github.com/tollgate-dev/tollgate/api/tollgate/quota/v1"
	"github.com/tollgate-dev/tollgate/extproc/quota"
)

// Options configure a Ledger.
type Options struct {
	// Client reaches the quota authority.
	Client quotav1.QuotaServiceClient
	// Replica names this process to the authority (its node id).
	Replica string
	// LeaseRequests is a lease's size in requests: a slot asks for that many
	// times the request that needs it; 8 when zero. Larger leases mean fewer
	// renewals and more headroom stranded near a limit (docs/policy.md).
	LeaseRequests int64
	// AcquireTimeout is how long a request waits for the authority when its
	// slot cannot cover it; 1 s when zero.
	AcquireTimeout time.Duration
	// RenewEvery is how often the background loop looks at the slots;
	// 250 ms when zero.
	RenewEvery time.Duration
	// IdleAfter is how long a slot may go unused before its free units go
	// back to the authority (the lease stays, empty, until it expires);
	// 10 s when zero.
	IdleAfter time.Duration
	// RateFailOpen admits requests on the local rolling window (rates) or
	// gauge (concurrency) at limit/N while the authority is unreachable,
	// rather than refusing them. Budgets always fail closed.
	RateFailOpen bool
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger; slog.Default when nil.
	Logger *slog.Logger
}

// Ledger is a quota.Ledger backed by leases from the quota authority. Run
// must be running for it to reach the authority.
type Ledger struct {
	o        Options
	now      func() time.Time
	log      *slog.Logger
	inbox    chan *slot
	up       atomic.Bool  // a stream to the authority is open
	streams  atomic.Int64 // streams opened so far
	mu       sync.Mutex
	slots    map[string]*slot // by lease id
	counters map[quota.SubjectID][]*counter
	closing  atomic.Bool
	act      activity // for metrics (metrics.go)
}

// New returns a Ledger; call Run to connect it.
func New(o Options) *Ledger {
	if o.LeaseRequests <= 0 {
		o.LeaseRequests = 8
	}
	if o.AcquireTimeout <= 0 {
		o.AcquireTimeout = time.Second
	}
	if o.RenewEvery <= 0 {
		o.RenewEvery = 250 * time.Millisecond
	}
	if o.IdleAfter <= 0 {
		o.IdleAfter = 10 * time.Second
	}
	l := &Ledger{o: o, now: o.Now, log: o.Logger, inbox: make(chan *slot, 1024),
		slots: map[string]*slot{}, counters: map[quota.SubjectID][]*counter{}}
	if l.now == nil {
		l.now = time.Now
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	return l
}

// leased maps the meters that are leased to the protocol's.
var leased = map[quota.Meter]quotav1.Meter{
	quota.RequestsPerMinute:  quotav1.Meter_METER_REQUESTS_PER_MINUTE,
	quota.TokensPerMinute:    quotav1.Meter_METER_TOKENS_PER_MINUTE,
	quota.DaySpend:           quotav1.Meter_METER_DAY_BUDGET,
	quota.MonthSpend:         quotav1.Meter_METER_MONTH_BUDGET,
	quota.TotalSpend:         quotav1.Meter_METER_TOTAL_BUDGET,
	quota.ConcurrentRequests: quotav1.Meter_METER_CONCURRENT_REQUESTS,
}

// Counter returns a leased counter for the meters the authority counts and
// a local one for the rest.
func (l *Ledger) Counter(s quota.SubjectID, m quota.Meter) quota.Counter {
	inner := quota.LocalLedger{}.Counter(s, m)
	pm, ok := leased[m]
	if !ok {
		return inner
	}
	kind := quotav1.SubjectKind_SUBJECT_KIND_TENANT
	if s.Kind == quota.Key {
		kind = quotav1.SubjectKind_SUBJECT_KIND_KEY
	}
	c := &counter{l: l, inner: inner, meter: m, pm: pm, kind: kind, subject: s.ID,
		rate: m == quota.RequestsPerMinute || m == quota.TokensPerMinute, conc: m == quota.ConcurrentRequests}
	l.mu.Lock()
	l.counters[s] = append(l.counters[s], c)
	l.mu.Unlock()
	return c
}

// Forget returns the subject's leases.
func (l *Ledger) Forget(s quota.SubjectID) {
	l.mu.Lock()
	cs := l.counters[s]
	delete(l.counters, s)
	l.mu.Unlock()
	for _, c := range cs { // l.mu released: it is a leaf lock
		c.mu.Lock()
		c.forgotten = true
		c.mu.Unlock()
	}
}

// counter is one leased meter of one subject.
type counter struct {
	l       *Ledger
	inner   quota.Counter
	meter   quota.Meter
	pm      quotav1.Meter
	kind    quotav1.SubjectKind
	subject string
	rate    bool
	conc    bool // concurrency: units come back to the slot when requests end

	mu        sync.Mutex
	cur       *slot // the latest window's
	next      *slot // a rate's next minute, leased ahead
	old       []*slot
	marks     []held // a rate reservation's mark is its index here
	freeMarks []quota.Mark
	forgotten bool
}

// held is one reservation: the inner counter's mark and the slot its units
// came from (nil: not leased, the limit being unset or failed open).
type held struct {
	inner quota.Mark
	s     *slot
}

// slot is a counter's lease in one window. Its numbers are in the
// authority's scale: what this replica reports as settled is settled −
// offset, offset being what earlier leases of the window were charged.
type slot struct {
	c      *counter
	window int64
	start  time.Time

	id       string
	seq      uint64
	settled  int64 // actual usage of ended requests, in total
	inFlight int64
	offset   int64
	reported int64 // the highest settled reported (the authority's never decreases)

	holding    int64 // as of the last answer
	sAcked     int64 // the settled that answer reflects
	deadline   time.Time
	acked      time.Time
	lastGrant  int64
	need       int64 // the last request's size, for the next lease's
	limit      int64
	limited    bool
	ctrUsed    int64 // settled + others' holdings, at the last answer
	leases     int32
	noRoom     time.Time // the authority had less than noRoomNeed left until then
	noRoomN    int64
	lastUsed   time.Time
	urgent     bool   // a request waits for this slot's next answer
	appliedSeq uint64 // the seq of the last answer applied
	taken      int64  // units taken since the last report: the rate the next lease should cover
	pending    bool
	release    bool // the window is over, or the subject forgotten: give it back
	ended      bool
	answered   chan struct{}
	answeredN  uint64
	sent       map[uint64]time.Time // send times of reports not yet answered, by seq
}

// free is what the slot may still take.
func (s *slot) free(now time.Time) int64 {
	if s.ended || s.deadline.IsZero() || !now.Before(s.deadline) {
		return 0
	}
	return max(s.holding+s.sAcked-(s.settled-s.offset+s.inFlight), 0)
}

func (c *counter) windowOf(at quota.Instant) (int64, time.Time) {
	switch c.meter {
	case quota.RequestsPerMinute, quota.TokensPerMinute:
		w := floorDiv(at.Micros, 60_000_000)
		return w, time.UnixMicro(w * 60_000_000).UTC()
	case quota.DaySpend:
		return at.Day, time.UnixMicro(at.Day * 86_400_000_000).UTC()
	case quota.MonthSpend:
		y := floorDiv(at.Month, 12)
		return at.Month, time.Date(int(y), time.Month(at.Month-y*12+1), 1, 0, 0, 0, 0, time.UTC)
	}
	return 0, time.Unix(0, 0).UTC()
}

// slotFor returns the slot of at's window; windows only move forward (a
// late request counts in the newer window). c.mu is held.
func (c *counter) slotFor(at quota.Instant) *slot {
	w, start := c.windowOf(at)
	if c.cur != nil && w <= c.cur.window {
		return c.cur
	}
	if c.cur != nil {
		c.retire(c.cur)
	}
	if c.next != nil && c.next.window == w {
		// Leased ahead, in the last seconds of the previous minute.
		c.cur, c.next = c.next, nil
		return c.cur
	}
	if c.next != nil {
		c.retire(c.next) // skipped over: nobody came in its minute
		c.next = nil
	}
	c.cur = c.newSlot(w, start)
	return c.cur
}

func (c *counter) newSlot(w int64, start time.Time) *slot {
	s := &slot{c: c, window: w, start: start, id: uuid.NewString(), answered: make(chan struct{})}
	c.l.mu.Lock()
	c.l.slots[s.id] = s
	c.l.mu.Unlock()
	return s
}

// retire gives a past window's slot back once its requests have settled.
func (c *counter) retire(s *slot) {
	s.release = true
	c.old = append(c.old, s)
	c.l.enqueue(s)
}

// leaseAhead is how long before a minute ends a busy rate slot leases the
// next minute, so that its first request need not wait for the authority.
const leaseAhead = 5 * time.Second

// leasedBit marks a budget reservation that took units from a slot; the
// rest of the mark is the inner counter's (the window, far below 2^62).
const leasedBit quota.Mark = 1 << 62

// slotOf finds the slot of a window: the current one, or one being
// released (nil once released: its units were already charged).
func (c *counter) slotOf(w int64) *slot {
	if c.cur != nil && c.cur.window == w {
		return c.cur
	}
	for _, s := range c.old {
		if s.window == w {
			return s
		}
	}
	return nil
}

// mark files a rate reservation; the engine settles each exactly once, so
// its index is free again after that.
func (c *counter) mark(h held) quota.Mark {
	if n := len(c.freeMarks); n > 0 {
		m := c.freeMarks[n-1]
		c.freeMarks = c.freeMarks[:n-1]
		c.marks[m] = h
		return m
	}
	c.marks = append(c.marks, h)
	return quota.Mark(len(c.marks) - 1)
}

// Reserve takes n units from the window's lease, asking the authority for
// one when the slot cannot cover them.
func (c *counter) Reserve(at quota.Instant, n, limit int64) (quota.Mark, bool) {
	if limit == math.MaxInt64 && !c.rate {
		// No budget (no concurrency limit): counted locally only. The inner mark (a window) is
		// the mark, without leasedBit.
		return c.inner.Reserve(at, n, limit)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.slotFor(at)
	innerLimit := limit
	if !c.rate {
		innerLimit = math.MaxInt64 // the lease is the budget's limit
	}
	now := at.Time() // the caller read the clock; reading it again costs more than the rest
	if (c.rate || c.conc) && c.l.o.RateFailOpen && !c.l.up.Load() && s.free(now) < n {
		// Cut off, failing open: this replica's share of the rate (of the
		// concurrency: the gauge counts every request of this replica).
		mk, ok := c.inner.Reserve(at, n, max(limit/int64(max(s.leases, 1)), 1))
		if !ok {
			return 0, false
		}
		if c.conc {
			return mk, true // without leasedBit: no slot to settle
		}
		return c.mark(held{inner: mk}), true
	}
	mk, ok := c.inner.Reserve(at, n, innerLimit)
	if !ok {
		return 0, false
	}
	s.need, s.lastUsed = max(n, 1), now
	if s.free(now) < n && !c.acquire(s, n, now) {
		c.inner.Settle(at, mk, n, 0, innerLimit) // undone exactly
		return 0, false
	}
	s.inFlight += n
	s.taken = satAdd(s.taken, n)
	if s.free(now) < s.lastGrant/2 {
		c.l.enqueue(s)
	}
	if !c.rate {
		// A budget's inner mark is its window, which also names the slot:
		// no table needed on the hot path.
		return mk | leasedBit, true
	}
	return c.mark(held{inner: mk, s: s}), true
}

// acquire asks the authority for units and waits for its answer. c.mu is
// held; it is released while waiting.
func (c *counter) acquire(s *slot, n int64, now time.Time) bool {
	if !c.l.up.Load() {
		return false
	}
	if now.Before(s.noRoom) && n >= s.noRoomN {
		return false // asked a moment ago: the authority had less left
	}
	deadline := time.Now().Add(c.l.o.AcquireTimeout)
	granted := false
	defer c.l.act.waited(deadline.Add(-c.l.o.AcquireTimeout), &granted)
	id, wantSeq := s.id, s.seq+1 // the answer to a report sent from now on
	s.urgent = true
	c.l.enqueue(s)
	for {
		ch := s.answered
		c.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		timedOut := false
		select {
		case <-ch:
		case <-t.C:
			timedOut = true
		}
		t.Stop()
		c.mu.Lock()
		now = c.l.now()
		if s.free(now) >= n {
			granted = true
			return true
		}
		if timedOut || s.ended || !time.Now().Before(deadline) {
			return false // no answer in time: the authority is slow or gone
		}
		if s.id != id {
			// A lease that had expired at the authority was replaced: ask
			// again on the new one.
			id, wantSeq, s.urgent = s.id, s.seq+1, true
			c.l.enqueue(s)
			continue
		}
		if s.appliedSeq >= wantSeq {
			break // answered: too little is left
		}
		// An answer to an earlier report: wait for ours.
	}
	if c.l.up.Load() && s.answeredN > 0 && !s.deadline.IsZero() {
		s.noRoom, s.noRoomN = now.Add(time.Second), n
	}
	return false
}

// Settle settles the units in the inner counter and in the slot they came
// from.
func (c *counter) Settle(at quota.Instant, m quota.Mark, taken, actual, limit int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var h held
	if c.rate {
		if m < 0 || int(m) >= len(c.marks) {
			return
		}
		h, c.marks[m] = c.marks[m], held{}
		c.freeMarks = append(c.freeMarks, m)
	} else {
		h.inner = m &^ leasedBit
		if m&leasedBit != 0 {
			h.s = c.slotOf(int64(h.inner))
		}
	}
	innerLimit := limit
	if !c.rate {
		innerLimit = math.MaxInt64
	}
	c.inner.Settle(at, h.inner, taken, actual, innerLimit)
	if s := h.s; s != nil {
		s.inFlight = max(s.inFlight-taken, 0)
		s.settled = satAdd(s.settled, actual)
		if s.release && s.inFlight == 0 {
			c.l.enqueue(s)
		}
	}
}

// Look reads the inner counter and, for a leased limit, the authority's
// count as of the last answer: Used is everything settled and held by other
// replicas plus this one's use since.
func (c *counter) Look(at quota.Instant, n, limit int64) quota.Reading {
	innerLimit := limit
	if !c.rate {
		innerLimit = math.MaxInt64
	}
	rd := c.inner.Look(at, n, innerLimit)
	if limit == math.MaxInt64 {
		return rd
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w, _ := c.windowOf(at)
	s := c.cur
	if s == nil || s.window != w {
		if rd.Used > limit || !rd.Fits {
			rd.Fits = false
		}
		rd.Remaining = max(min(rd.Remaining, limit-rd.Used), 0)
		return rd
	}
	now := at.Time()
	if s.answeredN > 0 {
		used := satAdd(s.ctrUsed, s.settled-s.offset-s.sAcked+s.inFlight)
		if !c.rate && !c.conc {
			// (Concurrency reads this replica's requests in flight: other
			// replicas' leases are mostly free units, not requests.)
			rd.Used = max(rd.Used, used)
		}
		rd.Remaining = max(min(rd.Remaining, limit-used), 0)
	}
	free := s.free(now)
	if n > free {
		askedInVain := now.Before(s.noRoom) && n >= s.noRoomN
		rd.Fits = rd.Fits && c.l.up.Load() && !askedInVain && n <= rd.Remaining
		failOpen := (c.rate || c.conc) && c.l.o.RateFailOpen
		if !c.l.up.Load() && !failOpen {
			rd.Unavailable = true
			rd.Fits = false
			rd.Wait = max(rd.Wait, time.Second)
		}
	}
	if !rd.Fits && rd.Wait == 0 && c.conc && n <= limit {
		// The gauge, read without the limit, knows no wait either: a slot
		// frees when a request ends, here or at another replica.
		rd.Wait = time.Second
	}
	if !rd.Fits && rd.Wait == 0 && !c.rate && n <= limit && rd.Reset > at.Micros {
		// The inner counter, read without the limit, knows no wait: a
		// budget spent across replicas resets with its window (a total,
		// Reset 0, never does).
		rd.Wait = max(time.Duration(rd.Reset-at.Micros)*time.Microsecond, time.Microsecond)
	}
	return rd
}

// enqueue asks the loop to report on s.
func (l *Ledger) enqueue(s *slot) {
	select {
	case l.inbox <- s:
	default: // the loop's tick will find it
	}
}

// Up reports whether a stream to the authority is open.
func (l *Ledger) Up() bool { return l.up.Load() }

// Streams reports how many streams to the authority have been opened: more
// than one means it reconnected.
func (l *Ledger) Streams() int64 { return l.streams.Load() }

// Run keeps a stream to the authority open until ctx ends, sending reports
// and applying answers.
func (l *Ledger) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := l.serve(ctx)
		l.up.Store(false)
		if ctx.Err() != nil {
			return
		}
		l.log.Warn("quota authority stream ended; leases are spent locally until they expire", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (l *Ledger) serve(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := l.o.Client.Lease(sctx)
	if err != nil {
		return err
	}
	l.up.Store(true)
	l.streams.Add(1)
	// Whatever was in flight on the old stream is reported again.
	for _, s := range l.allSlots() {
		s.c.mu.Lock()
		s.pending = false
		s.c.mu.Unlock()
	}
	errc := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = errors.New("closed by the authority")
				}
				errc <- err
				return
			}
			l.apply(resp)
		}
	}()
	tick := time.NewTicker(l.o.RenewEvery)
	defer tick.Stop()
	for {
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case s := <-l.inbox:
			if err := l.send(stream, s); err != nil {
				return err
			}
		case <-tick.C:
			for _, s := range l.due() {
				if err := l.send(stream, s); err != nil {
					return err
				}
			}
		}
	}
}

// allSlots lists the live slots. l.mu is a leaf lock: it is never held
// while a counter's lock is taken.
func (l *Ledger) allSlots() []*slot {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*slot, 0, len(l.slots))
	for _, s := range l.slots {
		out = append(out, s)
	}
	return out
}

// due lists the slots to report on now: running low, near their lease's
// expiry, or to be released.
func (l *Ledger) due() []*slot {
	now := l.now()
	var out []*slot
	for _, s := range l.allSlots() {
		c := s.c
		c.mu.Lock()
		if c.forgotten && !s.release {
			s.release = true
		}
		if !s.ended && (!s.pending || s.urgent) {
			ttl := s.deadline.Sub(s.acked)
			switch {
			case s.urgent: // its request to the inbox may have been dropped
				out = append(out, s)
			case s.release:
				out = append(out, s)
			case s.answeredN > 0 && s.holding > s.inFlight && now.Sub(s.lastUsed) > l.o.IdleAfter:
				out = append(out, s) // idle: give the free units back
			case s.answeredN > 0 && s.holding > s.inFlight && now.After(s.acked.Add(ttl/3)):
				out = append(out, s)
			case c.conc && s.answeredN > 0 && s.inFlight > 0 && now.After(s.acked.Add(ttl/3)):
				out = append(out, s) // slots still running: keep them leased
			case s.lastGrant > 0 && s.free(now) < s.lastGrant/2:
				out = append(out, s)
			}
		}
		if c.rate && s == c.cur && c.next == nil && !s.release && !c.forgotten && s.answeredN > 0 &&
			now.Sub(s.lastUsed) <= l.o.IdleAfter && !now.Before(s.start.Add(time.Minute-leaseAhead)) && now.Before(s.start.Add(time.Minute)) {
			c.next = c.newSlot(s.window+1, s.start.Add(time.Minute))
			c.next.need, c.next.lastUsed, c.next.limit, c.next.limited = s.need, now, s.limit, s.limited
			out = append(out, c.next)
		}
		c.mu.Unlock()
	}
	return out
}

// send reports on s, unless a report is pending and no request waits for
// a new one.
func (l *Ledger) send(stream quotav1.QuotaService_LeaseClient, s *slot) error {
	c := s.c
	c.mu.Lock()
	if s.ended || (s.pending && !s.urgent) {
		c.mu.Unlock()
		return nil
	}
	s.urgent = false
	s.seq++
	settled := max(s.settled-s.offset, s.reported, 0)
	s.reported = settled
	req := &quotav1.LeaseRequest{
		LeaseId: s.id, Seq: s.seq, Replica: l.o.Replica,
		Counter: &quotav1.CounterKey{SubjectKind: c.kind, SubjectId: c.subject, Meter: c.pm, WindowStart: timestamppb.New(s.start)},
		Settled: settled, InFlight: s.inFlight,
	}
	if s.release {
		// Wait for requests in flight unless the process is stopping.
		if s.inFlight > 0 && !l.closing.Load() {
			s.seq--
			c.mu.Unlock()
			return nil
		}
		req.Release = true
	} else if l.now().Sub(s.lastUsed) <= l.o.IdleAfter {
		req.Need = max(s.need, 1)
		req.Want = max(satMul(s.need, l.o.LeaseRequests), req.Need)
		// A busy slot leases twice what it took since its last report,
		// so renewals stay ahead of it however fast it spends; the
		// authority shrinks grants near the limit, which keeps the bound.
		req.Want = max(req.Want, satMul(s.taken, 2))
		if c.rate && s.limited {
			// A request per minute is a small unit: lease a tenth of the
			// rate at a time.
			req.Want = max(req.Want, s.limit/10)
		}
	} // else idle: want nothing free; the lease keeps only what is in flight
	s.pending, s.taken = true, 0
	if s.sent == nil {
		s.sent = map[uint64]time.Time{}
	}
	s.sent[req.Seq] = l.now()
	c.mu.Unlock()
	l.act.reports.Add(1)
	return stream.Send(req)
}

// apply takes an answer in.
func (l *Ledger) apply(resp *quotav1.LeaseResponse) {
	l.mu.Lock()
	s := l.slots[resp.GetLeaseId()]
	l.mu.Unlock()
	if s == nil {
		return
	}
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.ended || resp.GetLeaseId() != s.id {
		return
	}
	l.act.answered(resp.GetStatus())
	sentAt, ok := s.sent[resp.GetSeq()]
	for q := range s.sent {
		if q <= resp.GetSeq() {
			delete(s.sent, q)
		}
	}
	if resp.GetSeq() < s.seq {
		// Answers a report with a newer one already sent: the newer
		// answer is authoritative, but this one is not wrong.
		s.pending = true
	} else {
		s.pending = false
	}
	switch resp.GetStatus() {
	case quotav1.LeaseStatus_LEASE_STATUS_OK:
		if !ok {
			sentAt = l.now() // the send time is unknown; this is late, never early
		}
		ttl := time.Duration(resp.GetTtlMs()) * time.Millisecond
		s.holding, s.sAcked, s.appliedSeq = resp.GetHolding(), resp.GetSettled(), max(s.appliedSeq, resp.GetSeq())
		// The authority's clock started after this report was sent: ending
		// the lease here a tenth early keeps this replica inside it.
		s.acked, s.deadline = sentAt, sentAt.Add(ttl-ttl/10)
		s.limit, s.limited = resp.GetLimit(), resp.Limit != nil
		s.ctrUsed = satAdd(resp.GetCounterSettled(), resp.GetCounterHeld()-resp.GetHolding())
		s.leases = resp.GetLeases()
		s.lastGrant = s.free(l.now())
	case quotav1.LeaseStatus_LEASE_STATUS_EXPIRED:
		// Cut off for longer than the lease: the authority charged its
		// in-flight units and took back the rest. A new lease carries on,
		// reporting only what the old one was not charged for.
		l.log.Warn("quota lease expired at the authority; opening a new one", "lease_id", s.id, "subject", c.subject, "meter", c.meter.String())
		s.offset = satAdd(s.offset, resp.GetSettled())
		l.mu.Lock()
		delete(l.slots, s.id)
		s.id, s.seq, s.reported, s.holding, s.sAcked, s.deadline, s.pending, s.appliedSeq = uuid.NewString(), 0, 0, 0, 0, time.Time{}, false, 0
		if s.release && s.inFlight == 0 && s.settled <= s.offset {
			s.ended = true // nothing left to charge
		} else {
			l.slots[s.id] = s
		}
		l.mu.Unlock()
		if !s.ended {
			l.enqueue(s)
		}
	case quotav1.LeaseStatus_LEASE_STATUS_RELEASED:
		s.ended = true
		l.mu.Lock()
		delete(l.slots, s.id)
		l.mu.Unlock()
		for i, o := range c.old {
			if o == s {
				c.old = append(c.old[:i], c.old[i+1:]...)
				break
			}
		}
	default:
		l.log.Error("the quota authority refused a lease report; the counter refuses until its next window", "lease_id", s.id,
			"subject", c.subject, "meter", c.meter.String(), "message", resp.GetMessage())
		s.ended = true
		l.mu.Lock()
		delete(l.slots, s.id)
		l.mu.Unlock()
	}
	s.answeredN++
	close(s.answered)
	s.answered = make(chan struct{})
}

// Close returns every lease (requests still in flight are charged as
// reserved) and waits for the answers until ctx ends. Run must still be
// running.
func (l *Ledger) Close(ctx context.Context) error {
	l.closing.Store(true)
	for _, s := range l.allSlots() {
		s.c.mu.Lock()
		s.release = true
		s.c.mu.Unlock()
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		l.mu.Lock()
		n := len(l.slots)
		l.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("returning %d quota leases: %w", n, ctx.Err())
		case <-t.C:
		}
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

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
	if a <= 0 || b <= 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}
