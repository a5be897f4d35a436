// Package jobs runs the control plane's background jobs (purges, invoices,
// notification delivery) so that, with any number of control-plane
// replicas, each job runs on one replica at a time and about once per its
// interval.
//
// Each job has a lease row in the store (ent JobLease). A replica whose
// turn it is — the job is due (its last run finished at least Every ago)
// and nobody holds a live lease — takes the lease in a transaction, runs the
// job, renews the lease while the job runs, and releases it when the job
// ends, recording when it finished and its error. A replica that cannot
// renew (it lost the database, or another replica took the lapsed lease)
// cancels its job's context. Jobs must therefore be idempotent and work in
// bounded batches, committing as they go: a job cut short by a lost lease
// is run again, from where its data says it stopped, by whoever takes the
// lease next.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/joblease"
)

// Job is one background job.
type Job struct {
	// Name is unique among jobs and names the lease, e.g. "privacy.purge".
	Name string
	// Every is how long after a run finishes the next one is due.
	Every time.Duration
	// Run does the work. Its context ends when the runner stops or the
	// lease is lost. It must be idempotent and commit in bounded batches.
	Run func(ctx context.Context) error
}

// Defaults of a Runner's timing. A lease lives TTL unless renewed; the
// holder renews it every TTL/3, so two missed renewals still leave it
// live. Replicas look for due jobs every Poll (or every Every if shorter),
// with jitter so that replicas started together do not all try at once.
const (
	DefaultTTL  = 30 * time.Second
	DefaultPoll = 15 * time.Second
)

// Runner runs jobs under leases. Set TTL, Poll and Now before Run to change
// the defaults (tests do).
type Runner struct {
	store  *store.Store
	holder string
	log    *slog.Logger

	TTL  time.Duration
	Poll time.Duration
	Now  func() time.Time
	// Tracers, if set, gets a root span per run (see RunIfDue).
	Tracers trace.TracerProvider

	mu   sync.Mutex
	jobs []Job
}

// New returns a runner for the replica named holder (its name must differ
// from every other replica's: host name and process id, say).
func New(st *store.Store, holder string, log *slog.Logger) *Runner {
	return &Runner{store: st, holder: holder, log: log, TTL: DefaultTTL, Poll: DefaultPoll, Now: time.Now}
}

// Add registers a job. It panics on a job without a name, run function or
// positive interval, or on a name given twice: those are programming errors.
func (r *Runner) Add(j Job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if j.Name == "" || j.Run == nil || j.Every <= 0 {
		panic(fmt.Sprintf("jobs: job %q needs a name, a run function and a positive interval", j.Name))
	}
	for _, o := range r.jobs {
		if o.Name == j.Name {
			panic(fmt.Sprintf("jobs: job %q added twice", j.Name))
		}
	}
	r.jobs = append(r.jobs, j)
}

// Run runs every added job under its lease until ctx ends, and returns
// when every job it started has stopped.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	jobs := append([]Job(nil), r.jobs...)
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() { r.loop(ctx, j) })
	}
	wg.Wait()
	return ctx.Err()
}

func (r *Runner) loop(ctx context.Context, j Job) {
	poll := min(r.Poll, j.Every)
	for {
		// Up to a quarter of the interval of jitter.
		wait := poll - time.Duration(rand.Int64N(int64(poll)/4+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if _, err := r.RunIfDue(ctx, j); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "background job failed; it runs again when next due", "job", j.Name, "err", err)
		}
	}
}

// RunIfDue runs j now if it is due and no other replica holds its lease,
// and reports whether it ran. The error is the lease's or the job's.
func (r *Runner) RunIfDue(ctx context.Context, j Job) (ran bool, err error) {
	ok, err := r.acquire(ctx, j)
	if err != nil || !ok {
		return false, err
	}
	ctx, span := r.startRun(ctx, j)
	defer func() { endRun(span, err) }()
	jobCtx, cancel := context.WithCancelCause(ctx)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		r.renew(jobCtx, cancel, j.Name)
	}()
	started := r.Now()
	runErr := j.Run(jobCtx)
	lost := context.Cause(jobCtx)
	cancel(nil)
	<-renewed
	if errors.Is(lost, errLeaseLost) {
		// Another replica owns the lease now; its record stands.
		return true, fmt.Errorf("jobs: %s: %w", j.Name, errLeaseLost)
	}
	r.log.DebugContext(ctx, "background job ran", "job", j.Name, "took", r.Now().Sub(started), "err", runErr)
	if err := r.release(ctx, j.Name, runErr); err != nil {
		return true, errors.Join(runErr, err)
	}
	if runErr != nil {
		return true, fmt.Errorf("jobs: %s: %w", j.Name, runErr)
	}
	return true, nil
}

var errLeaseLost = errors.New("lease lost to another replica")

// startRun starts the root span of a run of j: a trace of its own (sampled
// at the configured ratio) whose children are the run's transactions. Taking
// the lease is not in it: a replica looks for due jobs every Poll, and a
// trace per look would be noise.
func (r *Runner) startRun(ctx context.Context, j Job) (context.Context, trace.Span) {
	if r.Tracers == nil {
		return ctx, trace.SpanFromContext(context.Background()) // a no-op span
	}
	return r.Tracers.Tracer("github.com/tollgate-dev/tollgate/controlplane/jobs").Start(ctx, "job "+j.Name,
		trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.String("tollgate.job.name", j.Name), attribute.String("tollgate.job.holder", r.holder)))
}

// endRun ends a run's span with its outcome: succeeded, failed, or
// lease_lost (another replica took the lease; the job stopped). The error's
// text is the job's last_error in the store (tollgatectl status), not an
// attribute: a job's error may quote what it worked on.
func endRun(span trace.Span, err error) {
	outcome := "succeeded"
	switch {
	case errors.Is(err, errLeaseLost):
		outcome = "lease_lost"
	case err != nil:
		outcome = "failed"
	}
	span.SetAttributes(attribute.String("tollgate.outcome", outcome))
	if err != nil {
		span.SetAttributes(attribute.String("error.type", outcome))
		span.SetStatus(codes.Error, outcome)
	}
	span.End()
}

// acquire takes j's lease if j is due and the lease is free or lapsed.
// The store runs transactions SERIALIZABLE (SQLite: one writer), so two
// replicas reading the same lapsed lease cannot both take it: one commits,
// the other retries and sees the new holder.
func (r *Runner) acquire(ctx context.Context, j Job) (bool, error) {
	var took bool
	err := r.store.InTx(ctx, func(tx *ent.Tx) error {
		took = false
		now := r.Now().UTC()
		l, err := tx.JobLease.Query().Where(joblease.ID(j.Name)).Only(ctx)
		switch {
		case ent.IsNotFound(err):
			took = true
			return tx.JobLease.Create().SetID(j.Name).SetHolder(r.holder).
				SetExpiresAt(now.Add(r.TTL)).SetStartedAt(now).Exec(ctx)
		case err != nil:
			return err
		}
		if l.ExpiresAt.After(now) {
			return nil // held by a live lease (a run is under way somewhere)
		}
		if l.FinishedAt != nil && now.Sub(*l.FinishedAt) < j.Every {
			return nil // not due
		}
		took = true
		return tx.JobLease.UpdateOne(l).SetHolder(r.holder).SetExpiresAt(now.Add(r.TTL)).SetStartedAt(now).Exec(ctx)
	})
	if err != nil {
		return false, fmt.Errorf("jobs: taking the lease of %s: %w", j.Name, err)
	}
	return took, nil
}

// renew extends the lease every TTL/3 until ctx ends, and cancels the job
// with errLeaseLost when the lease is no longer this replica's, or with the
// error when renewing fails for as long as the lease lives.
func (r *Runner) renew(ctx context.Context, cancel context.CancelCauseFunc, name string) {
	every := r.TTL / 3
	lastRenewed := r.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		now := r.Now().UTC()
		n, err := r.extend(ctx, name, now)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			if now.Sub(lastRenewed) >= r.TTL-every {
				// The lease lapses before the next attempt: stop the job.
				cancel(fmt.Errorf("renewing the lease: %w", err))
				return
			}
			r.log.WarnContext(ctx, "renewing a job lease failed; trying again", "job", name, "err", err)
		case n == 0:
			cancel(errLeaseLost)
			return
		default:
			lastRenewed = now
		}
	}
}

func (r *Runner) extend(ctx context.Context, name string, now time.Time) (int, error) {
	var n int
	err := r.store.InTx(ctx, func(tx *ent.Tx) error {
		var err error
		n, err = tx.JobLease.Update().
			Where(joblease.ID(name), joblease.Holder(r.holder), joblease.ExpiresAtGT(now)).
			SetExpiresAt(now.Add(r.TTL)).Save(ctx)
		return err
	})
	return n, err
}

// release records the finished run and frees the lease, unless another
// replica took it meanwhile.
func (r *Runner) release(ctx context.Context, name string, runErr error) error {
	msg := ""
	if runErr != nil {
		msg = runErr.Error()
		if len(msg) > 2000 {
			msg = msg[:2000]
		}
	}
	// The run's own context may be over (shutdown); the record is still
	// worth writing, briefly.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := r.store.InTx(ctx, func(tx *ent.Tx) error {
		now := r.Now().UTC()
		_, err := tx.JobLease.Update().Where(joblease.ID(name), joblease.Holder(r.holder)).
			SetExpiresAt(now).SetFinishedAt(now).SetLastError(msg).AddRuns(1).Save(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("jobs: releasing the lease of %s: %w", name, err)
	}
	return nil
}

// Status is what the store says about one job.
type Status struct {
	Name       string
	Holder     string
	Running    bool
	StartedAt  *time.Time
	FinishedAt *time.Time
	LastError  string
	Runs       int64
}

// Statuses reads every job's lease, for status pages and tests.
func Statuses(ctx context.Context, st *store.Store, now time.Time) ([]Status, error) {
	ls, err := st.Client().JobLease.Query().Order(ent.Asc(joblease.FieldID)).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("jobs: reading leases: %w", err)
	}
	out := make([]Status, 0, len(ls))
	for _, l := range ls {
		out = append(out, Status{
			Name: l.ID, Holder: l.Holder, Running: l.ExpiresAt.After(now),
			StartedAt: l.StartedAt, FinishedAt: l.FinishedAt, LastError: l.LastError, Runs: l.Runs,
		})
	}
	return out, nil
}
