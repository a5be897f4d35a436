package store

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestParseDSN(t *testing.T) {
	// SQLite DSNs must come out with these, whatever the operator wrote.
	sqliteWant := map[string]string{
		"_foreign_keys": "1",
		"_txlock":       "immediate",
	}
	tests := []struct {
		dsn         string
		wantDialect Dialect
		wantPath    string            // SQLite: the part before "?"
		wantParams  map[string]string // SQLite: parameters beyond sqliteWant
		wantHost    string            // PostgreSQL, CockroachDB
		wantPort    uint16
		wantDB      string
	}{
		{dsn: "sqlite:///var/lib/tollgate/tollgate.db", wantDialect: SQLite, wantPath: "/var/lib/tollgate/tollgate.db",
			wantParams: map[string]string{"_journal_mode": "WAL", "_busy_timeout": "5000"}},
		{dsn: "sqlite://data/tollgate.db", wantDialect: SQLite, wantPath: "data/tollgate.db"},
		{dsn: "SQLite://data/tollgate.db", wantDialect: SQLite, wantPath: "data/tollgate.db"},
		{dsn: "file:tollgate.db?mode=rwc", wantDialect: SQLite, wantPath: "file:tollgate.db",
			wantParams: map[string]string{"mode": "rwc"}},
		{dsn: "tollgate.db", wantDialect: SQLite, wantPath: "tollgate.db"},
		{dsn: "/abs/tollgate.db", wantDialect: SQLite, wantPath: "/abs/tollgate.db"},
		{dsn: "sqlite:///x.db?_busy_timeout=10&_journal_mode=DELETE", wantDialect: SQLite, wantPath: "/x.db",
			wantParams: map[string]string{"_busy_timeout": "10", "_journal_mode": "DELETE"}},
		// Required settings win over the DSN, including modernc's alias.
		{dsn: "sqlite:///x.db?_fk=0&_foreign_keys=0&_txlock=deferred", wantDialect: SQLite, wantPath: "/x.db",
			wantParams: map[string]string{"_fk": ""}},
		{dsn: "postgres://tollgate:pw@db.internal:5433/tollgate?sslmode=disable", wantDialect: Postgres,
			wantHost: "db.internal", wantPort: 5433, wantDB: "tollgate"},
		{dsn: "postgresql://tollgate:pw@db.internal/tollgate?sslmode=disable", wantDialect: Postgres,
			wantHost: "db.internal", wantPort: 5432, wantDB: "tollgate"},
		{dsn: "cockroachdb://root@crdb-public:26257/tollgate?sslmode=disable", wantDialect: CockroachDB,
			wantHost: "crdb-public", wantPort: 26257, wantDB: "tollgate"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			got, err := parseDSN(tt.dsn)
			if err != nil {
				t.Fatalf("parseDSN: %v", err)
			}
			if got.dialect != tt.wantDialect {
				t.Errorf("dialect = %q, want %q", got.dialect, tt.wantDialect)
			}
			if tt.wantDialect == SQLite {
				checkSQLiteSource(t, got.sqliteSource, tt.wantPath, sqliteWant, tt.wantParams)
				return
			}
			c := got.pgConfig
			if c == nil {
				t.Fatal("no pgx config")
			}
			if c.Host != tt.wantHost || c.Port != tt.wantPort || c.Database != tt.wantDB {
				t.Errorf("host, port, db = %s, %d, %s; want %s, %d, %s", c.Host, c.Port, c.Database, tt.wantHost, tt.wantPort, tt.wantDB)
			}
		})
	}
}

func checkSQLiteSource(t *testing.T, source, wantPath string, maps ...map[string]string) {
	t.Helper()
	path, query, _ := strings.Cut(source, "?")
	if path != wantPath {
		t.Errorf("path = %q, want %q (source %q)", path, wantPath, source)
	}
	params, err := url.ParseQuery(query)
	if err != nil {
		t.Fatalf("source %q: %v", source, err)
	}
	for _, m := range maps {
		for k, v := range m {
			if got := params.Get(k); got != v {
				t.Errorf("parameter %s = %q, want %q (source %q)", k, got, v, source)
			}
		}
	}
}

func TestParseDSNRejects(t *testing.T) {
	tests := []struct {
		dsn  string
		want string // in the error
	}{
		{"", "empty DSN"},
		{"mysql://u:pw@h/db", `unsupported DSN scheme "mysql"`},
		{"tollgate", "neither a URL nor a path ending in .db"},
		{"tollgate.sqlite", "neither a URL nor a path ending in .db"},
		{"sqlite://", "names no file"},
		{"file:", "names no file"},
		{"postgres://u:pw@h:notaport/db", "invalid postgres DSN"},
		{"cockroachdb://u:pw@h:notaport/db", "invalid cockroachdb DSN"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			_, err := parseDSN(tt.dsn)
			if err == nil {
				t.Fatal("parseDSN succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), "accepted forms: sqlite://") {
				t.Errorf("error %q does not list the accepted forms", err)
			}
		})
	}
}

// The password must not reach an error message, whichever step fails:
// parsing, driver configuration, or connecting.
func TestOpenNeverQuotesThePassword(t *testing.T) {
	tests := []struct {
		dsn     string
		secrets []string
	}{
		{"mysql://u:s3cretpw@h/db", []string{"s3cretpw"}},
		{"postgres://u:s3cretpw@h:notaport/db", []string{"s3cretpw"}},
		{"postgres://u:s3cr%40tpw@h:notaport/db", []string{"s3cr%40tpw", "s3cr@tpw"}},
		{"postgres://u:s3cr/tpw@h:notaport/db", []string{"s3cr/tpw"}},
		{"postgres://u:s3cretpw@h/db?sslmode=bogus", []string{"s3cretpw"}},
		{"postgres://u@h:notaport/db?password=s3cretpw", []string{"s3cretpw"}},
		{"cockroachdb://u:s3cretpw@h:notaport/db", []string{"s3cretpw"}},
		// Nothing listens on port 1: the connection is refused.
		{"postgres://u:s3cretpw@127.0.0.1:1/db?sslmode=disable&connect_timeout=2", []string{"s3cretpw"}},
		{"postgres://u@127.0.0.1:1/db?sslmode=disable&password=s3cretpw", []string{"s3cretpw"}},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := Open(ctx, tt.dsn)
			if err == nil {
				_ = s.Close() // the test has already failed
				t.Fatal("Open succeeded")
			}
			for _, secret := range tt.secrets {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error quotes the password %q: %v", secret, err)
				}
			}
		})
	}
}

// A driver that quotes the whole DSN in its error still must not leak the
// password through Open.
func TestRedactHidesPasswordsDriversQuote(t *testing.T) {
	dsn := "postgres://u:s3cr%2Ftpw@h/db?password=0th3rpw"
	cause := errors.New(`cannot parse "` + dsn + `" nor "postgres://u:s3cr/tpw@h/db"`)
	err := redact(cause, dsnSecrets(dsn))
	for _, secret := range []string{"s3cr%2Ftpw", "s3cr/tpw", "0th3rpw"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error quotes %q: %v", secret, err)
		}
	}
	if !errors.Is(err, cause) {
		t.Error("redacted error does not wrap its cause")
	}
}
