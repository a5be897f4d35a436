package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/telemetry"
)

// Transactions are timed by outcome, retries counted, and the pool's
// connections reported, per database system.
func TestStoreMetrics(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		tel, err := telemetry.New(t.Context(), telemetry.Options{Service: "store-test"})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tel.Shutdown(context.Background()) }()
		if err := s.Instrument(tel.Meters()); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		calls := 0
		if err := s.InTx(ctx, func(tx *ent.Tx) error {
			if calls++; calls < 3 {
				return fmt.Errorf("simulated conflict: %w", &pgconn.PgError{Code: "40001"})
			}
			return createTenant("acme")(tx)
		}); err != nil {
			t.Fatal(err)
		}
		failed := errors.New("not retryable")
		if err := s.InTx(ctx, func(*ent.Tx) error { return failed }); !errors.Is(err, failed) {
			t.Fatal(err)
		}
		fams, err := tel.Gather()
		if err != nil {
			t.Fatal(err)
		}
		system := map[store.Dialect]string{store.SQLite: "sqlite", store.Postgres: "postgresql", store.CockroachDB: "cockroachdb"}[s.Dialect()]
		for outcome, want := range map[string]float64{"committed": 1, "error": 1} {
			if n, ok := fams.Sum("tollgate_db_transaction_duration_seconds", "db_system_name", system, "tollgate_outcome", outcome); !ok || n != want {
				t.Errorf("%s transactions = %v (found %v), want %v", outcome, n, ok, want)
			}
		}
		if n, ok := fams.Sum("tollgate_db_transaction_retries_total", "db_system_name", system); !ok || n != 2 {
			t.Errorf("retries = %v (found %v), want 2", n, ok)
		}
		if _, ok := fams.Sum("db_client_connection_count", "db_client_connection_state", "idle"); !ok {
			t.Error("no idle connection count")
		}
	})
}
