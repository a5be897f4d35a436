package store

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLSTATEs after which running the whole transaction again can succeed.
const (
	sqlstateSerializationFailure = "40001" // PostgreSQL SERIALIZABLE conflict; every CockroachDB retry
	sqlstateDeadlockDetected     = "40P01" // PostgreSQL chose this transaction as a deadlock victim
)

// IsRetryable reports whether err means the transaction lost a race and
// would likely succeed if run again: a serialization failure or deadlock on
// PostgreSQL or CockroachDB, or a locked database on SQLite. Errors that
// leave the outcome unknown, such as a connection lost during COMMIT, are
// not retryable: running the transaction again could apply it twice.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == sqlstateSerializationFailure || pgErr.Code == sqlstateDeadlockDetected
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		// The store's connections report extended result codes (for
		// example SQLITE_BUSY_SNAPSHOT, 517); the primary code is the low
		// byte.
		switch liteErr.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
	}
	return false
}
