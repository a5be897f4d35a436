package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
)

func TestIsRetryable(t *testing.T) {
	lite := provokeSQLiteErrors(t)
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain error", errors.New("database is locked"), false},
		{"context canceled", context.Canceled, false},
		{"no rows", sql.ErrNoRows, false},
		{"postgres serialization failure", &pgconn.PgError{Code: "40001"}, true},
		{"postgres deadlock", &pgconn.PgError{Code: "40P01"}, true},
		{"wrapped serialization failure", fmt.Errorf("updating tenant: %w", &pgconn.PgError{Code: "40001"}), true},
		{"joined serialization failure", errors.Join(errors.New("x"), &pgconn.PgError{Code: "40001"}), true},
		{"postgres unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"postgres deferred foreign key", &pgconn.PgError{Code: "23503"}, false},
		{"postgres lock timeout", &pgconn.PgError{Code: "55P03"}, false},
		{"ent constraint error", &ent.ConstraintError{}, false},
		{"sqlite busy", lite.busy, true},
		{"sqlite busy snapshot (extended code)", lite.busySnapshot, true},
		{"sqlite locked", lite.locked, true},
		{"wrapped sqlite busy", fmt.Errorf("store: begin: %w", lite.busy), true},
		{"sqlite constraint", lite.constraint, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := store.IsRetryable(tt.err); got != tt.want {
				t.Errorf("IsRetryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// sqliteErrors are real errors from modernc.org/sqlite, so that the test
// checks what the driver returns rather than what we believe it returns.
type sqliteErrors struct {
	busy, busySnapshot, locked, constraint error
}

func provokeSQLiteErrors(t *testing.T) sqliteErrors {
	t.Helper()
	ctx := context.Background()
	// No busy timeout: a locked database fails at once.
	dsn := "file:" + filepath.Join(t.TempDir(), "errors.db") + "?_journal_mode=WAL&_busy_timeout=0"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("closing the database: %v", err)
		}
	})
	mustExec(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY)")
	a, b := conn(t, db), conn(t, db)

	var e sqliteErrors
	// busy: b wants the write lock a holds.
	mustExec(t, a, "BEGIN IMMEDIATE")
	_, e.busy = b.ExecContext(ctx, "BEGIN IMMEDIATE")
	mustExec(t, a, "ROLLBACK")

	// busy snapshot: a read at an older snapshot than b's commit, then
	// tries to write.
	mustExec(t, a, "BEGIN")
	mustExec(t, a, "SELECT count(*) FROM t")
	mustExec(t, b, "INSERT INTO t (id) VALUES (1)")
	_, e.busySnapshot = a.ExecContext(ctx, "INSERT INTO t (id) VALUES (2)")
	mustExec(t, a, "ROLLBACK")

	// locked: a table cannot be dropped while its own connection reads it.
	e.locked = func() error {
		rows, err := a.QueryContext(ctx, "SELECT id FROM t")
		if err != nil {
			t.Fatal(err)
		}
		// Deferred, so that the rows close even when t.Fatal exits: a's
		// cleanup would wait forever on open rows.
		defer func() {
			if err := rows.Close(); err != nil {
				t.Errorf("closing rows: %v", err)
			}
		}()
		if !rows.Next() {
			t.Fatalf("reading t: no row (err: %v)", rows.Err())
		}
		_, err = a.ExecContext(ctx, "DROP TABLE t")
		return err
	}()

	_, e.constraint = a.ExecContext(ctx, "INSERT INTO t (id) VALUES (1)")

	for name, want := range map[string]struct {
		err  error
		code int
	}{
		"busy":          {e.busy, 5},
		"busy snapshot": {e.busySnapshot, 517},
		"locked":        {e.locked, 6},
		"constraint":    {e.constraint, 1555}, // SQLITE_CONSTRAINT_PRIMARYKEY
	} {
		var le *sqlite.Error
		if !errors.As(want.err, &le) || le.Code() != want.code {
			t.Fatalf("provoking %s: got %v, want an SQLite error with code %d", name, want.err, want.code)
		}
	}
	return e
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func mustExec(t *testing.T, db execer, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func conn(t *testing.T, db *sql.DB) *sql.Conn {
	t.Helper()
	c, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing a connection: %v", err)
		}
	})
	return c
}
