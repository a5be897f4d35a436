package store_test

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

func TestOpenReportsDialectAndPings(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		if err := s.Ping(context.Background()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		want := store.SQLite
		if strings.HasSuffix(t.Name(), "/postgres") {
			want = store.Postgres
		}
		if s.Dialect() != want {
			t.Errorf("Dialect() = %q, want %q", s.Dialect(), want)
		}
	})
}

func TestOpenSQLiteEnforcesForeignKeysAndWAL(t *testing.T) {
	s := storetest.SQLite(t)
	ctx := context.Background()
	var fk int
	var mode string
	if err := s.DB().QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if fk != 1 || mode != "wal" {
		t.Errorf("foreign_keys = %d, journal_mode = %s; want 1 and wal", fk, mode)
	}
}

// A replica starting while another process holds the SQLite file's lock
// (converting a new file to WAL, say) is refused its first connection at
// once; Open tries again until the lock is released instead of failing.
func TestOpenSQLiteWaitsForALockedFile(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.SQLiteDSN(t)
	path := strings.TrimPrefix(dsn, "sqlite://")

	// Another process's connection, in rollback-journal mode, holding the
	// exclusive lock.
	other, err := sql.Open("sqlite", "file:"+path+"?_journal_mode=DELETE")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	for _, q := range []string{"CREATE TABLE t (x INTEGER)", "BEGIN EXCLUSIVE", "INSERT INTO t VALUES (1)"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	retried := make(chan error, 1)
	restore := store.OnOpenRetry(func(err error) {
		select {
		case retried <- err:
		default:
		}
	})
	t.Cleanup(restore)
	type result struct {
		s   *store.Store
		err error
	}
	opened := make(chan result, 1)
	go func() {
		// A busy timeout of 1 ms: without the retry the first refusal
		// would be Open's error.
		s, err := store.Open(ctx, dsn+"?_busy_timeout=1")
		opened <- result{s, err}
	}()
	select {
	case err := <-retried:
		if !store.IsRetryable(err) {
			t.Errorf("Open retried after %v, which is not a busy database", err)
		}
	case r := <-opened:
		t.Fatalf("Open returned (%v) while the file was locked, without trying again", r.err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	r := <-opened
	if r.err != nil {
		t.Fatalf("Open after the lock was released: %v", r.err)
	}
	t.Cleanup(func() { _ = r.s.Close() })
	var mode string
	if err := r.s.DB().QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %s, want wal", mode)
	}
}

func TestCloseEndsThePool(t *testing.T) {
	s, err := store.Open(context.Background(), storetest.SQLiteDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Ping(context.Background()); err == nil {
		t.Error("Ping succeeded after Close")
	}
}

// The server's own authentication failure must not carry the password into
// the error either.
func TestOpenWithWrongPasswordDoesNotQuoteIt(t *testing.T) {
	admin := os.Getenv(storetest.EnvPostgresDSN)
	if admin == "" {
		storetest.PostgresDSN(t) // skips, or fails when PostgreSQL is required
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("%s is not a URL", storetest.EnvPostgresDSN)
	}
	const wrong = "wr0ng-pa55word"
	u.User = url.UserPassword(u.User.Username(), wrong)
	_, err = store.Open(context.Background(), u.String())
	if err == nil {
		t.Fatal("Open succeeded with a wrong password")
	}
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("error quotes the password: %v", err)
	}
	t.Logf("error: %v", err)
}
