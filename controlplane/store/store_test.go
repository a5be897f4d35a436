package store_test

import (
	"context"
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
