package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tollgate-dev/tollgate/ent/migrate"
)

// migrateAttempts bounds how often Migrate plans again after losing a race
// with another migrator.
const migrateAttempts = 5

// SQLSTATEs a migrator gets when another one created the same object first.
var migrationRaceStates = map[string]bool{
	"42P07": true, // duplicate_table (also a duplicate index)
	"42710": true, // duplicate_object (a constraint)
	"42701": true, // duplicate_column
	"23505": true, // unique_violation in the catalog: two CREATE TABLEs at once
}

// Migrate brings the schema up to date with ent's, additively: it creates
// missing tables, columns and indexes and never drops a column or an index,
// so it is safe to run on every start and after every upgrade, and an older
// binary still finds the columns it knows.
//
// Each run inspects the database, plans the difference and applies the plan
// in one transaction. Two migrators at once (several replicas starting
// together) can therefore both plan the same CREATE; the database lets one
// commit and fails the other, whose transaction rolls back whole. Migrate
// treats that failure as a lost race and plans again, finding nothing left
// to do. Deployments with several replicas should still migrate once, from
// a Job running `tollgate migrate`, so that replicas never race in the first
// place; see docs/storage.md.
func (s *Store) Migrate(ctx context.Context) error {
	var err error
	for attempt := 1; attempt <= migrateAttempts; attempt++ {
		err = s.migrateOnce(ctx)
		if err == nil || !lostMigrationRace(err) || attempt == migrateAttempts {
			break
		}
		slog.InfoContext(ctx, "store: lost a migration race to another migrator; planning again",
			"attempt", attempt, "err", err)
		if werr := wait(ctx, backoff(attempt)); werr != nil {
			// As in inRetriedTx, the last error is kept for the message
			// only: the caller gave up, so the error must not look retryable.
			return fmt.Errorf("store: migrating schema: %w (last attempt: %v)", werr, err) //nolint:errorlint // err must not be wrapped; see above
		}
	}
	if err != nil {
		return fmt.Errorf("store: migrating schema: %w", err)
	}
	return nil
}

// migrating serializes migrations within the process: ent's migration
// writes to the generated schema tables (migrate.Tables), which are package
// globals, so two stores migrating at once, as parallel tests do, would race
// on them. Migrators in different processes are the race Migrate retries.
var migrating sync.Mutex

func (s *Store) migrateOnce(ctx context.Context) error {
	migrating.Lock()
	defer migrating.Unlock()
	return s.client.Schema.Create(ctx,
		migrate.WithDropColumn(false),
		migrate.WithDropIndex(false),
	)
}

// lostMigrationRace reports whether err says another migrator changed the
// schema between this one's inspection and its apply.
func lostMigrationRace(err error) bool {
	if IsRetryable(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return migrationRaceStates[pgErr.Code]
	}
	// SQLite has no code of its own for "already exists"; it is a plain
	// SQLITE_ERROR told apart by its message.
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		return liteErr.Code()&0xff == sqlite3.SQLITE_ERROR && strings.Contains(liteErr.Error(), "already exists")
	}
	return false
}
