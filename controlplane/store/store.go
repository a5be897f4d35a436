package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	entdialect "entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/tollgate-dev/tollgate/ent"
)

// Dialect names the database a Store talks to.
type Dialect string

const (
	SQLite      Dialect = "sqlite"
	Postgres    Dialect = "postgres"
	CockroachDB Dialect = "cockroachdb"
)

// defaultMaxAttempts bounds the whole-transaction retry on PostgreSQL and
// SQLite, and the savepoint retries on CockroachDB. Twenty attempts with the
// backoff below give a contended transaction about seven seconds to get through
// before the caller sees the error.
const defaultMaxAttempts = 20

// Store is the database behind the control plane: an ent client, the
// dialect it speaks, and the transaction retry policy for that dialect.
type Store struct {
	db          *sql.DB
	client      *ent.Client
	dialect     Dialect
	maxAttempts int

	// retries counts transaction attempts after the first, for tests (see
	// export_test.go) and metrics.
	retries atomic.Uint64
	metrics *storeMetrics // nil until Instrument
}

// Open connects to the database dsn names and checks that it answers. See
// docs/storage.md for the accepted DSN forms. The DSN's password never
// appears in a returned error.
func Open(ctx context.Context, dsn string) (*Store, error) {
	s, err := open(ctx, dsn)
	if err != nil {
		return nil, redact(err, dsnSecrets(dsn))
	}
	return s, nil
}

func open(ctx context.Context, dsn string) (*Store, error) {
	t, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	db, err := t.openDB()
	if err != nil {
		return nil, err
	}
	tunePool(db, t.dialect)
	if err := ping(ctx, db, t.dialect); err != nil {
		_ = db.Close() // the ping error is the one to report
		return nil, fmt.Errorf("store: connecting to %s: %w", t.dialect, err)
	}
	d := t.dialect
	if d == Postgres {
		if d, err = detectCockroachDB(ctx, db); err != nil {
			_ = db.Close() // the detection error is the one to report
			return nil, err
		}
	}
	return &Store{
		db:          db,
		client:      ent.NewClient(ent.Driver(entsql.OpenDB(entDialect(d), db))),
		dialect:     d,
		maxAttempts: defaultMaxAttempts,
	}, nil
}

// openBusyAttempts bounds how often the first connection to a busy SQLite
// database is tried again: with the transaction backoff that is about seven
// seconds, on top of each attempt's busy timeout.
const openBusyAttempts = defaultMaxAttempts

// onOpenRetry, when set (by tests), is called before each retried ping.
var onOpenRetry func(err error)

// ping makes the first connection. A connection to SQLite runs the DSN's
// pragmas as it opens, and switching a new database file to WAL needs an
// exclusive lock that SQLite may refuse at once, without waiting out the
// busy timeout, while another process (a replica starting at the same
// moment) opens or converts the same file; such a refusal is tried again.
func ping(ctx context.Context, db *sql.DB, d Dialect) error {
	for attempt := 1; ; attempt++ {
		err := db.PingContext(ctx)
		if err == nil || d != SQLite || !IsRetryable(err) || attempt >= openBusyAttempts {
			return err
		}
		if onOpenRetry != nil {
			onOpenRetry(err)
		}
		if werr := wait(ctx, backoff(attempt)); werr != nil {
			return err
		}
	}
}

func (t target) openDB() (*sql.DB, error) {
	if t.pgConfig != nil {
		return stdlib.OpenDB(*t.pgConfig), nil
	}
	db, err := sql.Open("sqlite", t.sqliteSource)
	if err != nil {
		return nil, fmt.Errorf("store: opening sqlite: %w", err)
	}
	return db, nil
}

// tunePool sets connection pool limits that database/sql's defaults get
// wrong for a server that bursts.
// maxOpenConns bounds each store's connections to PostgreSQL or
// CockroachDB: enough for the control plane's concurrency, few enough that
// several replicas fit under a server's connection limit.
const maxOpenConns = 32

func tunePool(db *sql.DB, d Dialect) {
	// The default of two idle connections makes a burst of concurrent
	// transactions open (and, on PostgreSQL, authenticate) fresh connections
	// each time.
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if d != SQLite {
		// Recycling connections lets a load balancer in front of a
		// CockroachDB cluster spread them over nodes that joined later.
		db.SetConnMaxLifetime(30 * time.Minute)
		// A bounded pool makes a burst of transactions wait for a
		// connection instead of opening one each: unbounded, 100 concurrent
		// admin calls exhaust PostgreSQL's default max_connections (100)
		// and fail with "too many clients" instead of being served.
		db.SetMaxOpenConns(maxOpenConns)
	}
}

// detectCockroachDB tells CockroachDB from PostgreSQL behind a postgres://
// DSN, so that a CockroachDB cluster gets the savepoint protocol whichever
// scheme the operator wrote.
func detectCockroachDB(ctx context.Context, db *sql.DB) (Dialect, error) {
	var version string
	if err := db.QueryRowContext(ctx, "SELECT version()").Scan(&version); err != nil {
		return "", fmt.Errorf("store: reading server version: %w", err)
	}
	if strings.Contains(version, "CockroachDB") {
		return CockroachDB, nil
	}
	return Postgres, nil
}

// entDialect maps a Dialect to ent's: CockroachDB speaks ent's postgres
// dialect (Atlas detects CockroachDB by itself when it inspects the schema).
func entDialect(d Dialect) string {
	if d == SQLite {
		return entdialect.SQLite
	}
	return entdialect.Postgres
}

// Client returns the ent client for reads outside a transaction. Writes go
// through InTx.
func (s *Store) Client() *ent.Client { return s.client }

// Dialect reports which database the store is connected to.
func (s *Store) Dialect() Dialect { return s.dialect }

// DB returns the underlying connection pool, for tests and health checks.
func (s *Store) DB() *sql.DB { return s.db }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Close closes every connection. Transactions still running fail.
func (s *Store) Close() error {
	if err := s.client.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}
