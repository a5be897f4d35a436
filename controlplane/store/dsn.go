package store

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// acceptedForms ends every DSN error, so that the operator who typed a bad
// DSN learns what would have worked.
const acceptedForms = "accepted forms: sqlite:///abs/path.db, sqlite://rel/path.db, " +
	"file:path.db, path/to/file.db, postgres://user:password@host:5432/db, " +
	"postgresql://..., cockroachdb://user:password@host:26257/db"

// target is what a DSN resolves to: a dialect and the driver configuration
// that reaches it.
type target struct {
	dialect      Dialect
	sqliteSource string          // modernc.org/sqlite data source name
	pgConfig     *pgx.ConnConfig // PostgreSQL and CockroachDB
}

// sqliteDefaults apply unless the DSN sets them. WAL lets readers run while
// a writer commits; the busy timeout makes a writer wait for the lock a
// little before SQLITE_BUSY sends its transaction to the retry loop.
var sqliteDefaults = map[string]string{
	"_journal_mode": "WAL",
	"_busy_timeout": "5000",
}

// sqliteRequired override the DSN because the store depends on them: ent's
// migration refuses to run without foreign keys, and BEGIN IMMEDIATE takes
// the write lock up front so that two read-then-write transactions cannot
// deadlock upgrading their read locks (which SQLite reports as an
// unretryable-by-waiting SQLITE_BUSY in the middle of the transaction).
var sqliteRequired = map[string]string{
	"_foreign_keys": "1",
	"_txlock":       "immediate",
}

// sqliteAliases are modernc's alternative spellings of the required keys; an
// alias would win over the canonical key, so it is removed.
var sqliteAliases = []string{"_fk"}

// parseDSN resolves dsn without connecting. Its errors may quote dsn only
// through drivers that redact it; Open redacts again regardless.
func parseDSN(dsn string) (target, error) {
	lower := strings.ToLower(dsn)
	switch {
	case dsn == "":
		return target{}, fmt.Errorf("store: empty DSN; %s", acceptedForms)
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		return postgresTarget(Postgres, dsn)
	case strings.HasPrefix(lower, "cockroachdb://"):
		// CockroachDB speaks the PostgreSQL wire protocol; pgx only needs
		// the scheme it knows.
		return postgresTarget(CockroachDB, "postgres://"+dsn[len("cockroachdb://"):])
	case strings.HasPrefix(lower, "sqlite://"):
		return sqliteTarget(dsn[len("sqlite://"):])
	case strings.HasPrefix(lower, "file:"):
		// Keep the prefix: SQLite parses file: names as URIs.
		return sqliteTarget(dsn)
	}
	if scheme, _, ok := strings.Cut(dsn, "://"); ok {
		return target{}, fmt.Errorf("store: unsupported DSN scheme %q; %s", scheme, acceptedForms)
	}
	if path, _, _ := strings.Cut(dsn, "?"); strings.HasSuffix(path, ".db") {
		return sqliteTarget(dsn)
	}
	return target{}, fmt.Errorf("store: DSN is neither a URL nor a path ending in .db; %s", acceptedForms)
}

func postgresTarget(d Dialect, dsn string) (target, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return target{}, fmt.Errorf("store: invalid %s DSN: %w; %s", d, err, acceptedForms)
	}
	return target{dialect: d, pgConfig: cfg}, nil
}

// sqliteTarget builds modernc's data source name from a path (or file: URI)
// and its query parameters, adding the store's defaults and requirements.
func sqliteTarget(name string) (target, error) {
	path, query, _ := strings.Cut(name, "?")
	if path == "" || strings.EqualFold(path, "file:") {
		return target{}, fmt.Errorf("store: SQLite DSN names no file; %s", acceptedForms)
	}
	params, err := url.ParseQuery(query)
	if err != nil {
		return target{}, fmt.Errorf("store: invalid SQLite DSN parameters: %w", err)
	}
	for k, v := range sqliteDefaults {
		if !params.Has(k) {
			params.Set(k, v)
		}
	}
	for _, k := range sqliteAliases {
		params.Del(k)
	}
	for k, v := range sqliteRequired {
		params.Set(k, v)
	}
	return target{dialect: SQLite, sqliteSource: path + "?" + params.Encode()}, nil
}

// dsnSecrets returns the password dsn carries, in every spelling an error
// message could quote: percent-encoded or not, taken from the userinfo or
// from pgx's password query parameter. A DSN that is not a well-formed URL
// still gets its likely password found, because the errors it causes are
// the ones most likely to quote it.
func dsnSecrets(dsn string) []string {
	var secrets []string
	add := func(s string) {
		if s == "" {
			return
		}
		secrets = append(secrets, s)
		if u, err := url.PathUnescape(s); err == nil && u != s {
			secrets = append(secrets, u)
		}
	}
	if _, rest, ok := strings.Cut(dsn, "://"); ok {
		// Per the URL grammar the authority ends at the first / ? or #; a
		// password with an unescaped one of those is cut at the last @
		// instead. Redacting both candidates covers either reading.
		authority := rest
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			authority = rest[:i]
		}
		for _, s := range []string{authority, rest} {
			if at := strings.LastIndex(s, "@"); at >= 0 {
				_, pw, _ := strings.Cut(s[:at], ":")
				add(pw)
			}
		}
	}
	if _, query, ok := strings.Cut(dsn, "?"); ok {
		for _, kv := range strings.Split(query, "&") {
			if k, v, _ := strings.Cut(kv, "="); k == "password" {
				add(v)
			}
		}
	}
	// Longest first, so that a secret containing another is replaced whole.
	sort.Slice(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
	return secrets
}

// redactedError hides secrets in the message of the error it wraps while
// keeping it reachable for errors.Is and errors.As.
type redactedError struct {
	err     error
	secrets []string
}

func (e *redactedError) Error() string {
	msg := e.err.Error()
	for _, s := range e.secrets {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}

func (e *redactedError) Unwrap() error { return e.err }

func redact(err error, secrets []string) error {
	if len(secrets) == 0 {
		return err
	}
	return &redactedError{err: err, secrets: secrets}
}
