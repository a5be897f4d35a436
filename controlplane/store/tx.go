package store

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cockroachdb/cockroach-go/v2/crdb"

	"github.com/tollgate-dev/tollgate/ent"
)

// Backoff between whole-transaction attempts: exponential from backoffBase,
// capped at backoffCap, with jitter so that the transactions that collided
// do not collide again in lock step.
const (
	backoffBase = 5 * time.Millisecond
	backoffCap  = 500 * time.Millisecond
)

// InTx runs fn in a transaction and commits it, retrying as the dialect
// requires. fn may run more than once; see the package documentation for
// what that demands of fn and for how errors are reported.
func (s *Store) InTx(ctx context.Context, fn func(tx *ent.Tx) error) error {
	start := time.Now()
	ctx, span := s.startTxSpan(ctx)
	var (
		attempts int
		err      error
	)
	if s.dialect == CockroachDB {
		attempts, err = s.inSavepointTx(ctx, fn)
	} else {
		attempts, err = s.inRetriedTx(ctx, fn)
	}
	s.metrics.txDone(ctx, start, err)
	countTx(ctx, attempts)
	endTxSpan(span, attempts, err)
	return err
}

// inRetriedTx retries the whole transaction, for PostgreSQL and SQLite,
// and returns how many attempts it made.
func (s *Store) inRetriedTx(ctx context.Context, fn func(tx *ent.Tx) error) (int, error) {
	for attempt := 1; ; attempt++ {
		err := s.attempt(ctx, fn)
		if err == nil || !IsRetryable(err) {
			return attempt, err
		}
		if attempt >= s.maxAttempts {
			return attempt, fmt.Errorf("store: transaction retries exhausted after %d attempts: %w", attempt, err)
		}
		s.retries.Add(1)
		if werr := wait(ctx, backoff(attempt)); werr != nil {
			// The last error is kept for the message only: the caller
			// gave up, so the error must not look retryable.
			return attempt, fmt.Errorf("store: transaction abandoned after %d attempts: %w (last attempt: %v)", attempt, werr, err) //nolint:errorlint // err must not be wrapped; see above
		}
	}
}

// attempt runs one begin, fn, commit. fn's own error is returned as it is.
func (s *Store) attempt(ctx context.Context, fn func(tx *ent.Tx) error) error {
	tx, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	committed := false
	defer func() {
		// Runs when fn failed or panicked or called runtime.Goexit
		// (t.FailNow in a test), and when the commit failed: a commit hook
		// that fails before the driver's COMMIT leaves the transaction
		// open, holding its connection and, on SQLite, the write lock.
		// The rollback's own error is dropped: the transaction is void
		// either way (after a failed driver COMMIT this is sql.ErrTxDone),
		// and the caller needs the error that caused it.
		if !committed {
			_ = tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	committed = true
	return nil
}

// begin starts a SERIALIZABLE transaction. CockroachDB runs every
// transaction so by default, SQLite has one writer at a time, and
// PostgreSQL would default to READ COMMITTED, under which a read-modify-write
// in fn can silently lose a concurrent update instead of failing with a
// retryable error. Asking for it explicitly also guards against a
// CockroachDB role or cluster configured for READ COMMITTED.
func (s *Store) begin(ctx context.Context) (*ent.Tx, error) {
	var opts *sql.TxOptions
	if s.dialect != SQLite {
		opts = &sql.TxOptions{Isolation: sql.LevelSerializable}
	}
	return s.client.BeginTx(ctx, opts)
}

// backoff returns the wait before attempt+1: up to backoffBase·2^(attempt-1),
// at most backoffCap, at least half of that.
func backoff(attempt int) time.Duration {
	d := backoffCap
	if attempt < 20 { // beyond that the shift overflows; the cap applies anyway
		d = min(backoffBase<<(attempt-1), backoffCap)
	}
	return d/2 + rand.N(d/2+1)
}

func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// inSavepointTx runs fn under cockroach-go's savepoint protocol, for
// CockroachDB only: there RELEASE SAVEPOINT cockroach_restart is the commit,
// so the final COMMIT that ExecuteInTx ignores cannot fail. It returns how
// many times fn ran (the attempts; at least 1).
func (s *Store) inSavepointTx(ctx context.Context, fn func(tx *ent.Tx) error) (int, error) {
	tx, err := s.begin(ctx)
	if err != nil {
		return 1, fmt.Errorf("store: begin: %w", err)
	}
	runs := 0
	// crdb reads 0 as "retry forever".
	ctx = crdb.WithMaxRetries(ctx, max(s.maxAttempts-1, 1))
	err = crdb.ExecuteInTx(ctx, savepointTx{tx}, func() error {
		if runs++; runs > 1 {
			s.retries.Add(1)
		}
		returned := false
		defer func() {
			// ExecuteInTx commits when fn neither returned an error nor
			// panicked, which is also what runtime.Goexit looks like from
			// its deferred function. Roll back first so that a half-run
			// fn is never committed.
			if !returned {
				_ = tx.Rollback()
			}
		}()
		err := fn(tx)
		returned = true
		return err
	})
	return max(runs, 1), err
}

// savepointTx adapts an ent transaction to crdb.Tx.
type savepointTx struct{ tx *ent.Tx }

var _ crdb.Tx = savepointTx{}

func (a savepointTx) Exec(ctx context.Context, query string, args ...any) error {
	_, err := a.tx.ExecContext(ctx, query, args...)
	return err
}

func (a savepointTx) Commit(context.Context) error   { return a.tx.Commit() }
func (a savepointTx) Rollback(context.Context) error { return a.tx.Rollback() }
