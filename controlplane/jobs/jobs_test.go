package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/controlplane/jobs"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent/joblease"
)

// clock is a settable clock shared by the runners of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func runner(st *store.Store, holder string, c *clock) *jobs.Runner {
	r := jobs.New(st, holder, slog.New(slog.DiscardHandler))
	r.Now = c.Now
	return r
}

func TestRunIfDueHonoursTheIntervalAcrossReplicas(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := &clock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
		a, b := runner(st, "a", c), runner(st, "b", c)
		var runs atomic.Int32
		j := jobs.Job{Name: "test.interval", Every: time.Hour, Run: func(context.Context) error { runs.Add(1); return nil }}

		if ran, err := a.RunIfDue(t.Context(), j); err != nil || !ran {
			t.Fatalf("first run: ran=%v err=%v", ran, err)
		}
		// Just run by a: neither replica runs it again within the hour.
		c.Add(59 * time.Minute)
		for _, r := range []*jobs.Runner{a, b} {
			if ran, err := r.RunIfDue(t.Context(), j); err != nil || ran {
				t.Fatalf("run within the interval: ran=%v err=%v", ran, err)
			}
		}
		c.Add(time.Minute)
		if ran, err := b.RunIfDue(t.Context(), j); err != nil || !ran {
			t.Fatalf("run when due on the other replica: ran=%v err=%v", ran, err)
		}
		if got := runs.Load(); got != 2 {
			t.Fatalf("job ran %d times, want 2", got)
		}
		l := st.Client().JobLease.GetX(t.Context(), "test.interval")
		if l.Holder != "b" || l.Runs != 2 || l.LastError != "" || l.FinishedAt == nil || !l.FinishedAt.Equal(c.Now()) {
			t.Fatalf("lease after two runs: %+v", l)
		}
	})
}

func TestALiveLeaseKeepsOtherReplicasOut(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := &clock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
		a, b := runner(st, "a", c), runner(st, "b", c)
		a.TTL = time.Hour // no renewal during the test
		inside, release := make(chan struct{}), make(chan struct{})
		j := jobs.Job{Name: "test.exclusive", Every: time.Minute, Run: func(context.Context) error {
			close(inside)
			<-release
			return nil
		}}
		done := make(chan error, 1)
		go func() { _, err := a.RunIfDue(t.Context(), j); done <- err }()
		<-inside
		// a is running (its lease lives an hour); b must not start.
		c.Add(10 * time.Minute)
		other := jobs.Job{Name: j.Name, Every: j.Every, Run: func(context.Context) error {
			t.Error("b ran the job while a held the lease")
			return nil
		}}
		if ran, err := b.RunIfDue(t.Context(), other); err != nil || ran {
			t.Fatalf("b during a's run: ran=%v err=%v", ran, err)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestALapsedLeaseIsTakenOverAndTheOldRunStopped(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := &clock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
		a, b := runner(st, "a", c), runner(st, "b", c)
		a.TTL = 300 * time.Millisecond // a renews every 100ms (real time)
		stopped := make(chan error, 1)
		started := make(chan struct{})
		j := jobs.Job{Name: "test.takeover", Every: time.Minute, Run: func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			stopped <- context.Cause(ctx)
			return ctx.Err()
		}}
		done := make(chan error, 1)
		go func() { _, err := a.RunIfDue(t.Context(), j); done <- err }()
		<-started
		// a's renewals stop counting: the fake clock jumps past its lease
		// (a hung replica whose lease lapsed), and b takes the job over.
		c.Add(time.Hour)
		var bRan atomic.Bool
		if ran, err := b.RunIfDue(t.Context(), jobs.Job{Name: j.Name, Every: j.Every, Run: func(context.Context) error {
			bRan.Store(true)
			return nil
		}}); err != nil || !ran {
			t.Fatalf("b taking over a lapsed lease: ran=%v err=%v", ran, err)
		}
		// a's next renewal finds the lease gone and cancels a's run.
		if cause := <-stopped; cause == nil || !strings.Contains(cause.Error(), "lease lost") {
			t.Fatalf("a's job stopped with cause %v, want the lost lease", cause)
		}
		if err := <-done; err == nil || !strings.Contains(err.Error(), "lease lost") {
			t.Fatalf("a's run returned %v, want the lost lease", err)
		}
		l := st.Client().JobLease.GetX(t.Context(), j.Name)
		if l.Holder != "b" || l.Runs != 1 || !bRan.Load() {
			t.Fatalf("lease after the takeover: %+v (b ran: %v)", l, bRan.Load())
		}
	})
}

func TestAFailedRunIsRecordedAndRetriedWhenDue(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		c := &clock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
		a := runner(st, "a", c)
		fail := true
		j := jobs.Job{Name: "test.fail", Every: time.Minute, Run: func(context.Context) error {
			if fail {
				return errors.New("provider of invoices unreachable")
			}
			return nil
		}}
		ran, err := a.RunIfDue(t.Context(), j)
		if !ran || err == nil {
			t.Fatalf("failing run: ran=%v err=%v", ran, err)
		}
		st2, err := jobs.Statuses(t.Context(), st, c.Now())
		if err != nil || len(st2) != 1 || st2[0].LastError != "provider of invoices unreachable" || st2[0].Running {
			t.Fatalf("statuses after a failure: %+v %v", st2, err)
		}
		fail = false
		c.Add(time.Minute)
		if ran, err := a.RunIfDue(t.Context(), j); !ran || err != nil {
			t.Fatalf("retry: ran=%v err=%v", ran, err)
		}
		if l := st.Client().JobLease.Query().Where(joblease.ID("test.fail")).OnlyX(t.Context()); l.LastError != "" || l.Runs != 2 {
			t.Fatalf("lease after the retry: %+v", l)
		}
	})
}

// Many replicas polling the same job with a real clock: never two runs at
// once, and the job runs.
func TestRunnersNeverOverlap(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		var running, overlaps, runs atomic.Int32
		j := jobs.Job{Name: "test.overlap", Every: time.Millisecond, Run: func(context.Context) error {
			if running.Add(1) > 1 {
				overlaps.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
			running.Add(-1)
			runs.Add(1)
			return nil
		}}
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for i := range 4 {
			r := jobs.New(st, fmt.Sprintf("replica-%d", i), slog.New(slog.DiscardHandler))
			r.Poll = 5 * time.Millisecond
			r.Add(j)
			wg.Go(func() { _ = r.Run(ctx) })
		}
		deadline := time.Now().Add(time.Minute)
		for runs.Load() < 20 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		if runs.Load() < 20 {
			t.Fatalf("only %d runs within a minute", runs.Load())
		}
		if overlaps.Load() != 0 {
			t.Fatalf("%d runs overlapped another", overlaps.Load())
		}
	})
}

func TestAddRejectsBadJobs(t *testing.T) {
	r := jobs.New(nil, "a", slog.New(slog.DiscardHandler))
	r.Add(jobs.Job{Name: "x", Every: time.Second, Run: func(context.Context) error { return nil }})
	for name, j := range map[string]jobs.Job{
		"no name":     {Every: time.Second, Run: func(context.Context) error { return nil }},
		"no run":      {Name: "y", Every: time.Second},
		"no interval": {Name: "y", Run: func(context.Context) error { return nil }},
		"twice":       {Name: "x", Every: time.Second, Run: func(context.Context) error { return nil }},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("Add accepted it")
				}
			}()
			r.Add(j)
		})
	}
}
