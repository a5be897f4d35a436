// Package store opens Tollgate's database, migrates its schema and runs write
// transactions with the retry discipline each database needs.
//
// Three dialects share one ent schema: SQLite (the embedded default for a
// single machine), PostgreSQL, and CockroachDB (the production target, reached
// over the PostgreSQL wire protocol). See docs/storage.md for the DSN forms
// and for how migrations behave on upgrade and with several replicas.
//
// # Transactions
//
// Every write goes through [Store.InTx]. What it does depends on the dialect:
//
//   - CockroachDB: one transaction driven by cockroach-go's savepoint
//     protocol (SAVEPOINT cockroach_restart; on a retryable error ROLLBACK TO
//     SAVEPOINT and run fn again; RELEASE SAVEPOINT is the commit). CockroachDB
//     runs every transaction SERIALIZABLE and may ask for a retry at any
//     statement, including the RELEASE.
//   - PostgreSQL and SQLite: the whole transaction is retried. Begin, run fn,
//     commit; if the begin, fn or the commit fails with an error
//     [IsRetryable] accepts (a serialization failure or deadlock on
//     PostgreSQL, SQLITE_BUSY or SQLITE_LOCKED on SQLite), roll back, wait a
//     jittered exponential backoff (5 ms doubling to 500 ms) and start
//     again, for at most ten attempts. The error after the last one says
//     the retries were exhausted and wraps the last attempt's error. The savepoint protocol is not used here on purpose: on
//     PostgreSQL, RELEASE is not the commit, so cockroach-go ignores an error
//     from the real COMMIT (a deferred constraint violation, a serialization
//     failure detected at commit) and reports success; and rolling back to a
//     savepoint cannot cure a serialization failure, because the
//     transaction's snapshot stays the same.
//
// Transactions on PostgreSQL and CockroachDB are SERIALIZABLE whatever the
// server's default, so that code behaves the same on both; SQLite allows one
// writer at a time, which is as strict.
//
// In both cases:
//
//   - fn may run more than once. It must not have side effects outside the
//     transaction (no RPCs, no channel sends, no mutation of captured state
//     that a second run would see half-done). Collect results in variables
//     that fn overwrites on each run, and act on them after InTx returns.
//   - An error from fn that is not retryable rolls the transaction back and
//     is returned as it is, so ent.IsConstraintError, ent.IsNotFound and
//     errors.Is keep working. Wrap database errors inside fn with %w only:
//     hiding the cause behind %v would also hide that it is retryable.
//   - A commit that fails is reported; nothing is ever reported as committed
//     that was not.
//   - A panic in fn rolls the transaction back and keeps panicking.
//   - fn must use the tx it is given, never Store.Client(): a second
//     connection cannot see the transaction's writes, and on SQLite it would
//     wait for the write lock the transaction itself holds.
//   - InTx must not be nested.
package store
