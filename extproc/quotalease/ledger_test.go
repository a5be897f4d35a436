package quotalease_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	quotav1 "github.com/tollgate-dev/tollgate/api/tollgate/quota/v1"
	"github.com/tollgate-dev/tollgate/extproc/quota"
	"github.com/tollgate-dev/tollgate/extproc/quotalease"
)

// fakeAuthority counts in memory as the control plane's authority does:
// grants only what fits under the limit, reports are cumulative.
type fakeAuthority struct {
	quotav1.UnimplementedQuotaServiceServer
	limit   int64 // for every counter
	mu      sync.Mutex
	ctr     map[string]*fakeCounter
	leases  map[string]*fakeLease
	reports atomic.Int64
	down    atomic.Bool
	streams sync.Map // context cancel funcs of open streams
}

type fakeCounter struct{ settled, held int64 }

type fakeLease struct {
	ctr                        *fakeCounter
	seq                        uint64
	settled, inFlight, holding int64
	ended, expired             bool
	conc                       bool
}

func concurrency(req *quotav1.LeaseRequest) bool {
	return req.GetCounter().GetMeter() == quotav1.Meter_METER_CONCURRENT_REQUESTS
}

func (f *fakeAuthority) Lease(stream quotav1.QuotaService_LeaseServer) error {
	if f.down.Load() {
		return status.Error(codes.Unavailable, "down")
	}
	ctx, cancel := context.WithCancel(stream.Context())
	f.streams.Store(&cancel, cancel)
	defer f.streams.Delete(&cancel)
	reqs := make(chan *quotav1.LeaseRequest)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				cancel()
				return
			}
			reqs <- req
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return status.Error(codes.Unavailable, "stream cut")
		case req := <-reqs:
			if f.down.Load() {
				return status.Error(codes.Unavailable, "down")
			}
			if err := stream.Send(f.report(req)); err != nil {
				return err
			}
		}
	}
}

func (f *fakeAuthority) report(req *quotav1.LeaseRequest) *quotav1.LeaseResponse {
	f.reports.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	k := req.GetCounter().String()
	c := f.ctr[k]
	if c == nil {
		c = &fakeCounter{}
		f.ctr[k] = c
	}
	l := f.leases[req.GetLeaseId()]
	if l == nil {
		l = &fakeLease{ctr: c, conc: concurrency(req)}
		f.leases[req.GetLeaseId()] = l
	}
	resp := &quotav1.LeaseResponse{LeaseId: req.GetLeaseId(), Seq: req.GetSeq(), TtlMs: 30_000, Limit: &f.limit, Leases: 1}
	if !l.ended && req.GetSeq() > l.seq {
		s := max(req.GetSettled(), l.settled)
		c.settled += s - l.settled
		others := c.held - l.holding
		holding := req.GetInFlight()
		if req.GetRelease() {
			if !concurrency(req) { // concurrency is released, not charged
				c.settled += holding
			}
			holding, l.ended = 0, true
		} else if left := f.limit - c.settled - others - holding; left >= req.GetNeed() && left > 0 {
			holding += min(left, req.GetWant())
		}
		l.seq, l.settled, l.inFlight, l.holding = req.GetSeq(), s, req.GetInFlight(), holding
		c.held = others + holding
	}
	resp.Holding, resp.Settled, resp.CounterSettled, resp.CounterHeld = l.holding, l.settled, c.settled, c.held
	resp.Status = quotav1.LeaseStatus_LEASE_STATUS_OK
	switch {
	case l.expired:
		resp.Status = quotav1.LeaseStatus_LEASE_STATUS_EXPIRED
	case l.ended:
		resp.Status = quotav1.LeaseStatus_LEASE_STATUS_RELEASED
	}
	return resp
}

// expireAll reclaims every live lease as the authority does at expiry: in
// flight charged, free units back.
func (f *fakeAuthority) expireAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.leases {
		if l.ended {
			continue
		}
		if !l.conc {
			l.ctr.settled += l.inFlight
			l.settled += l.inFlight
		}
		l.ctr.held -= l.holding
		l.inFlight, l.holding, l.ended, l.expired = 0, 0, true, true
	}
}

// cut ends every open stream and refuses new ones while down.
func (f *fakeAuthority) cut(down bool) {
	f.down.Store(down)
	f.streams.Range(func(_, v any) bool { v.(context.CancelFunc)(); return true })
}

func (f *fakeAuthority) totals() (settled, held int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.ctr {
		settled += c.settled
		held += c.held
	}
	return settled, held
}

func startAuthority(t testing.TB, limit int64) (*fakeAuthority, quotav1.QuotaServiceClient) {
	t.Helper()
	f := &fakeAuthority{limit: limit, ctr: map[string]*fakeCounter{}, leases: map[string]*fakeLease{}}
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	quotav1.RegisterQuotaServiceServer(g, f)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///fake", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return f, quotav1.NewQuotaServiceClient(conn)
}

func startLedger(t testing.TB, c quotav1.QuotaServiceClient, o quotalease.Options) (*quotalease.Ledger, *quota.Engine) {
	t.Helper()
	o.Client = c
	o.RenewEvery = 10 * time.Millisecond
	o.AcquireTimeout = 500 * time.Millisecond
	l := quotalease.New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, l.Up)
	return l, quota.New(quota.Options{Ledger: l})
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var tenant = uuid.NewString()

func budget(limit int64) []quota.Subject {
	var lim quota.Limits
	lim.Budgets[quota.Day].Hard = quota.Max(limit)
	return []quota.Subject{{Kind: quota.Tenant, ID: tenant, Limits: lim}}
}

func rpm(limit int64) []quota.Subject {
	return []quota.Subject{{Kind: quota.Tenant, ID: tenant, Limits: quota.Limits{RequestsPerMinute: quota.Max(limit)}}}
}

func TestRequestsSpendLocallyAndLeasesRenewAhead(t *testing.T) {
	f, c := startAuthority(t, 1_000_000)
	l, e := startLedger(t, c, quotalease.Options{LeaseRequests: 10})
	for i := range 200 {
		r, err := e.Admit(time.Now(), budget(1_000_000), quota.Cost{Micros: 1000})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		r.Settle(quota.Cost{Micros: 400})
		if i%5 == 0 {
			time.Sleep(2 * time.Millisecond) // let the renewals run
		}
	}
	if n := f.reports.Load(); n > 60 {
		t.Errorf("%d reports for 200 requests: the hot path is asking the authority", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Every lease returned: the authority holds nothing and has exactly the
	// settled spend.
	if settled, held := f.totals(); settled != 200*400 || held != 0 {
		t.Fatalf("authority: settled %d (want %d), held %d (want 0)", settled, 200*400, held)
	}
}

func TestLedgersNeverAdmitBeyondTheLimitTogether(t *testing.T) {
	_, c := startAuthority(t, 10_000)
	var engines []*quota.Engine
	for range 3 {
		_, e := startLedger(t, c, quotalease.Options{})
		engines = append(engines, e)
	}
	var wg sync.WaitGroup
	var admitted atomic.Int64
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := engines[i%3].Admit(time.Now(), budget(10_000), quota.Cost{Micros: 1000}); err == nil {
				admitted.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := admitted.Load(); n > 10 || n < 1 {
		t.Fatalf("admitted %d of 200 against a budget for 10", n)
	}
}

func TestBudgetsFailClosedWhenTheAuthorityIsUnreachable(t *testing.T) {
	f, c := startAuthority(t, 1_000_000)
	l, e := startLedger(t, c, quotalease.Options{LeaseRequests: 4})
	if _, err := e.Admit(time.Now(), budget(1_000_000), quota.Cost{Micros: 1000}); err != nil {
		t.Fatal(err)
	}
	f.cut(true)
	waitFor(t, func() bool { return !l.Up() })
	// The lease still holds units: they are spent; then requests are
	// refused as unavailable, not as over budget.
	admitted := 0
	var denial *quota.Denial
	for range 10 {
		_, err := e.Admit(time.Now(), budget(1_000_000), quota.Cost{Micros: 1000})
		if err == nil {
			admitted++
			continue
		}
		if !errors.As(err, &denial) {
			t.Fatal(err)
		}
		break
	}
	if admitted > 4 || denial == nil || !denial.Unavailable {
		t.Fatalf("admitted %d after the cut, then %v (unavailable: %v)", admitted, denial, denial != nil && denial.Unavailable)
	}
	f.cut(false)
	waitFor(t, l.Up)
	if _, err := e.Admit(time.Now(), budget(1_000_000), quota.Cost{Micros: 1000}); err != nil {
		t.Fatalf("after the authority came back: %v", err)
	}
}

func TestRatesFailOpenOrClosedByConfiguration(t *testing.T) {
	for _, open := range []bool{true, false} {
		f, c := startAuthority(t, 1000)
		l, e := startLedger(t, c, quotalease.Options{RateFailOpen: open})
		f.cut(true)
		waitFor(t, func() bool { return !l.Up() })
		admitted := 0
		for range 5 {
			if _, err := e.Admit(time.Now(), rpm(3), quota.Cost{}); err == nil {
				admitted++
			}
		}
		// Open: the local window at the limit (one replica seen); closed:
		// nothing without a lease.
		if want := map[bool]int{true: 3, false: 0}[open]; admitted != want {
			t.Errorf("fail open %v: admitted %d of 5 at 3 per minute; want %d", open, admitted, want)
		}
	}
}

func TestIdleLeasesGiveTheirUnitsBack(t *testing.T) {
	f, c := startAuthority(t, 1_000_000)
	_, e := startLedger(t, c, quotalease.Options{IdleAfter: 50 * time.Millisecond})
	r, err := e.Admit(time.Now(), budget(1_000_000), quota.Cost{Micros: 1000})
	if err != nil {
		t.Fatal(err)
	}
	r.Settle(quota.Cost{Micros: 1000})
	if _, held := f.totals(); held == 0 {
		t.Fatal("no lease held after a request")
	}
	waitFor(t, func() bool { settled, held := f.totals(); return held == 0 && settled == 1000 })
	// The next request gets a lease again.
	if _, err := e.Admit(time.Now(), budget(1_000_000), quota.Cost{Micros: 1000}); err != nil {
		t.Fatal(err)
	}
}

func TestAnExpiredLeaseIsReplacedAndItsUnreportedSpendCarriedOver(t *testing.T) {
	f, c := startAuthority(t, 1_000_000)
	l, e := startLedger(t, c, quotalease.Options{LeaseRequests: 10})
	spend := func(k int) {
		for range k {
			r, err := e.Admit(time.Now(), budget(1_000_000), quota.Cost{Micros: 1000})
			if err != nil {
				t.Fatal(err)
			}
			r.Settle(quota.Cost{Micros: 700})
		}
	}
	spend(7) // past half the lease: a renewal reports the spend
	waitFor(t, func() bool { settled, _ := f.totals(); return settled > 0 })
	spend(2)
	// The authority reclaims the lease (the replica was cut off past its
	// TTL) before hearing of the last spend.
	f.expireAll()
	spend(30) // runs dry, renews, finds the lease expired, opens another
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if settled, held := f.totals(); settled != 39*700 || held != 0 {
		t.Fatalf("authority: settled %d, held %d; want %d and 0", settled, held, 39*700)
	}
}

func TestReplicasShareARateWithinAMinute(t *testing.T) {
	_, c := startAuthority(t, 10)
	_, a := startLedger(t, c, quotalease.Options{})
	_, b := startLedger(t, c, quotalease.Options{})
	if time.Now().Second() >= 55 {
		time.Sleep(6 * time.Second) // the whole test within one UTC minute
	}
	at := time.Now()
	admitted := 0
	for i := range 40 {
		e := a
		if i%2 == 1 {
			e = b
		}
		if _, err := e.Admit(at, rpm(10), quota.Cost{}); err == nil {
			admitted++
		}
	}
	// Each replica's own window would admit 10: together they admit 10.
	if admitted > 10 || admitted < 5 {
		t.Fatalf("two replicas admitted %d requests in one minute at 10 per minute", admitted)
	}
}

func TestASpentBudgetSaysWhenItResets(t *testing.T) {
	_, c := startAuthority(t, 3000)
	_, e := startLedger(t, c, quotalease.Options{})
	now := time.Now()
	var err error
	for range 4 {
		if _, err = e.Admit(now, budget(3000), quota.Cost{Micros: 1000}); err != nil {
			break
		}
	}
	var d *quota.Denial
	if !errors.As(err, &d) {
		t.Fatalf("the fourth request of a budget for three: %v", err)
	}
	midnight := now.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	if d.Unavailable || !d.Reset.Equal(midnight) || d.RetryAfter <= 0 || d.RetryAfter > time.Until(midnight)+time.Second {
		t.Fatalf("denial %+v; want a reset at %v and a retry-after until then", d, midnight)
	}
}

func TestABusyRateLeasesTheNextMinuteAhead(t *testing.T) {
	f, c := startAuthority(t, 1000)
	minute := time.Now().Truncate(time.Minute).Add(time.Hour)
	var now atomic.Int64
	now.Store(minute.Add(57 * time.Second).UnixNano())
	_, e := startLedger(t, c, quotalease.Options{Now: func() time.Time { return time.Unix(0, now.Load()) }})
	if _, err := e.Admit(minute.Add(57*time.Second), rpm(100), quota.Cost{}); err != nil {
		t.Fatal(err)
	}
	// The loop leases the next minute in the last seconds of this one.
	waitFor(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.ctr) == 2
	})
	time.Sleep(50 * time.Millisecond) // its answer
	f.cut(true)
	// The next minute's first request is served from that lease, with the
	// authority gone and rates failing closed.
	now.Store(minute.Add(61 * time.Second).UnixNano())
	if _, err := e.Admit(minute.Add(61*time.Second), rpm(100), quota.Cost{}); err != nil {
		t.Fatalf("the next minute's first request: %v", err)
	}
}

func concurrent(limit int64) []quota.Subject {
	return []quota.Subject{{Kind: quota.Tenant, ID: tenant, Limits: quota.Limits{ConcurrentRequests: quota.Max(limit)}}}
}

func TestReplicasShareAConcurrencyLimit(t *testing.T) {
	f, c := startAuthority(t, 4)
	la, a := startLedger(t, c, quotalease.Options{})
	lb, b := startLedger(t, c, quotalease.Options{})
	engines := []*quota.Engine{a, b}
	// Twenty requests at once, on two replicas, none ending: at most 4 run.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var running []*quota.Reservation
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r, err := engines[i%2].Admit(time.Now(), concurrent(4), quota.Cost{}); err == nil {
				mu.Lock()
				running = append(running, r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if n := len(running); n > 4 || n < 1 {
		t.Fatalf("two replicas run %d requests at once under a concurrency limit of 4", n)
	}
	// They end: their slots come back, and 4 run again, no more.
	for _, r := range running {
		r.Settle(quota.Cost{})
	}
	running = running[:0]
	admit := func() error {
		var err error
		for _, e := range engines {
			var r *quota.Reservation
			if r, err = e.Admit(time.Now(), concurrent(4), quota.Cost{}); err == nil {
				running = append(running, r)
				return nil
			}
		}
		return err
	}
	for i := range 4 {
		if err := admit(); err != nil {
			t.Fatalf("request %d after the first ones ended: %v", i, err)
		}
	}
	var d *quota.Denial
	if err := admit(); !errors.As(err, &d) || d.Meter != quota.ConcurrentRequests || d.RetryAfter <= 0 {
		t.Fatalf("a fifth request with 4 running: %v", err)
	}
	if settled, held := f.totals(); settled != 0 || held > 4 {
		t.Fatalf("authority: settled %d, held %d; want 0 and at most 4", settled, held)
	}
	for _, r := range running {
		r.Settle(quota.Cost{})
	}
	// Concurrency is not spend: nothing is ever settled, and every slot
	// goes back when the replicas stop.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, l := range []*quotalease.Ledger{la, lb} {
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if settled, held := f.totals(); settled != 0 || held != 0 {
		t.Fatalf("authority after close: settled %d, held %d; want 0 and 0", settled, held)
	}
}

func TestConcurrencyFailsOpenOrClosedLikeRates(t *testing.T) {
	for _, open := range []bool{true, false} {
		f, c := startAuthority(t, 1000)
		l, e := startLedger(t, c, quotalease.Options{RateFailOpen: open})
		f.cut(true)
		waitFor(t, func() bool { return !l.Up() })
		admitted := 0
		var denial *quota.Denial
		for range 5 {
			_, err := e.Admit(time.Now(), concurrent(3), quota.Cost{})
			if err == nil {
				admitted++
			} else if !errors.As(err, &denial) {
				t.Fatal(err)
			}
		}
		// Open: the local gauge at the limit (one replica seen); closed:
		// nothing without a lease, refused as unavailable.
		if want := map[bool]int{true: 3, false: 0}[open]; admitted != want || denial == nil || denial.Unavailable == open {
			t.Errorf("fail open %v: admitted %d of 5 at 3 at once (want %d), then %+v", open, admitted, want, denial)
		}
	}
}

func TestAConcurrencySlotStillRunningIsRenewed(t *testing.T) {
	f, c := startAuthority(t, 1)
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	_, e := startLedger(t, c, quotalease.Options{Now: clock})
	r, err := e.Admit(clock(), concurrent(1), quota.Cost{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	// The lease holds only the request running, nothing free; a third
	// through its TTL it is renewed all the same, or the authority would
	// reclaim the slot and hand it to another replica.
	time.Sleep(50 * time.Millisecond)
	before := f.reports.Load()
	now.Add(int64(11 * time.Second))
	waitFor(t, func() bool { return f.reports.Load() > before })
}
