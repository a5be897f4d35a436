// Package storetest gives tests a fresh, migrated store on every dialect this
// machine can run: SQLite always, PostgreSQL when TOLLGATE_TEST_POSTGRES_DSN
// names a server (.ci/postgres.sh starts one and prints the variable).
//
// PostgreSQL stores run with default_transaction_isolation=serializable, so
// that transactions conflict, fail and are retried as they would be on
// CockroachDB.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/tollgate-dev/tollgate/controlplane/store"
)

const (
	// EnvPostgresDSN names an administrative DSN of a PostgreSQL server on
	// which the tests may create and drop databases, e.g.
	// postgres://tollgate:tollgate@127.0.0.1:5432/postgres?sslmode=disable.
	EnvPostgresDSN = "TOLLGATE_TEST_POSTGRES_DSN"
	// EnvRequirePostgres=1 turns a missing EnvPostgresDSN from a skip into
	// a failure, so that CI cannot pass by silently testing SQLite alone.
	EnvRequirePostgres = "TOLLGATE_TEST_REQUIRE_POSTGRES"
)

// Run runs f as the subtests "sqlite" and "postgres", each on a fresh
// migrated store. The postgres subtest skips when no server is configured,
// unless EnvRequirePostgres is set.
func Run(t *testing.T, f func(t *testing.T, s *store.Store)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { f(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, Postgres(t)) })
}

// SQLite returns a migrated store on a new database file in t.TempDir(),
// closed when t ends.
func SQLite(t testing.TB) *store.Store {
	t.Helper()
	return openMigrated(t, sqliteDSN(t))
}

// Postgres returns a migrated store on a new PostgreSQL database, closed and
// dropped when t ends.
func Postgres(t testing.TB) *store.Store {
	t.Helper()
	return openMigrated(t, postgresDSN(t))
}

// SQLiteDSN returns the DSN of a database file that does not exist yet, in
// t.TempDir(). Query parameters (such as _busy_timeout) may be appended.
func SQLiteDSN(t *testing.T) string { return sqliteDSN(t) }

func sqliteDSN(t testing.TB) string {
	t.Helper()
	return "sqlite://" + filepath.Join(t.TempDir(), "tollgate.db")
}

// PostgresDSN creates an empty database for t, dropped when t ends, and
// returns a DSN that connects to it with SERIALIZABLE as the default
// isolation. It skips t when EnvPostgresDSN is unset, or fails it when
// EnvRequirePostgres=1.
func PostgresDSN(t *testing.T) string { return postgresDSN(t) }

func postgresDSN(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvPostgresDSN)
	if admin == "" {
		if os.Getenv(EnvRequirePostgres) == "1" {
			t.Fatalf("storetest: %s=1 but %s is unset; start PostgreSQL with .ci/postgres.sh", EnvRequirePostgres, EnvPostgresDSN)
		}
		t.Skipf("storetest: %s is unset; run `export $(.ci/postgres.sh)` (as root) to test on PostgreSQL", EnvPostgresDSN)
	}
	name := "tg_" + randomHex(t, 8)
	if err := adminExec(admin, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	t.Cleanup(func() {
		// FORCE ends connections a failed test may have leaked, which would
		// otherwise block the drop.
		if err := adminExec(admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("storetest: %v", err)
		}
	})
	return databaseDSN(t, admin, name)
}

// databaseDSN points the admin DSN at database name, SERIALIZABLE by default.
// pgx sends unknown query parameters to the server as session settings.
func databaseDSN(t testing.TB, admin, name string) string {
	t.Helper()
	u, err := url.Parse(admin)
	if err != nil {
		// The parse error would quote the DSN, password included.
		t.Fatalf("storetest: %s is not a URL", EnvPostgresDSN)
	}
	u.Path = "/" + name
	q := u.Query()
	q.Set("default_transaction_isolation", "serializable")
	u.RawQuery = q.Encode()
	return u.String()
}

// adminExec runs stmt on the server EnvPostgresDSN names, on a connection
// of its own: CREATE and DROP DATABASE cannot run inside a transaction, nor
// on a connection to the database being dropped.
func adminExec(admin, stmt string) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", admin)
	if err != nil {
		return fmt.Errorf("opening %s: %w", EnvPostgresDSN, err)
	}
	defer func() {
		if cerr := db.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing %s: %w", EnvPostgresDSN, cerr))
		}
	}()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}

func openMigrated(t testing.TB, dsn string) *store.Store {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("storetest: open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("storetest: close: %v", err)
		}
	})
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("storetest: migrate: %v", err)
	}
	return s
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return hex.EncodeToString(b)
}
