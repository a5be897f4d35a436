package store

// Hooks for the external tests in package store_test, which cannot reach
// unexported fields but must import storetest (which imports store).

// Retries returns how many transaction attempts after the first s has made.
func Retries(s *Store) uint64 { return s.retries.Load() }

// SetMaxAttempts changes s's retry bound.
func SetMaxAttempts(s *Store, n int) { s.maxAttempts = n }

// UseSavepointProtocol makes s run InTx as it would on CockroachDB, so that
// the adapter to cockroach-go can be exercised on PostgreSQL and SQLite,
// both of which understand SAVEPOINT, RELEASE and ROLLBACK TO.
func UseSavepointProtocol(s *Store) { s.dialect = CockroachDB }

// OnOpenRetry makes Open call f before it tries a busy SQLite database
// again; the returned function restores the previous hook.
func OnOpenRetry(f func(err error)) (restore func()) {
	prev := onOpenRetry
	onOpenRetry = f
	return func() { onOpenRetry = prev }
}
