package store_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

func TestMigrateTwice(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		// storetest migrated once already.
		if err := s.Migrate(context.Background()); err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
		if err := s.InTx(context.Background(), createTenant("acme")); err != nil {
			t.Fatalf("writing after two migrations: %v", err)
		}
	})
}

// What an older or newer release added and this one does not know stays: a
// rollback to this binary must not destroy the newer one's data.
func TestMigrateKeepsUnknownColumnsAndIndexes(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		db := s.DB()
		mustExec(t, db, "ALTER TABLE tenants ADD COLUMN legacy_note TEXT")
		mustExec(t, db, "CREATE INDEX tenants_legacy_note ON tenants (legacy_note)")
		if err := s.Migrate(context.Background()); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		if _, err := db.ExecContext(context.Background(), "SELECT legacy_note FROM tenants"); err != nil {
			t.Errorf("the unknown column is gone: %v", err)
		}
		if !indexExists(t, s, "tenants_legacy_note") {
			t.Error("the unknown index is gone")
		}
	})
}

// An upgrade finds the previous release's schema, which lacks what this
// release added.
func TestMigrateAddsWhatAnUpgradeNeeds(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		db := s.DB()
		mustExec(t, db, "ALTER TABLE tenants DROP COLUMN billing_reference")
		mustExec(t, db, "DROP TABLE audit_events")
		if err := s.Migrate(context.Background()); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		ctx := context.Background()
		if err := s.Client().Tenant.Create().SetName("Acme").SetSlug("acme").SetBillingReference("cus_1").Exec(ctx); err != nil {
			t.Errorf("the re-added column does not work: %v", err)
		}
		if _, err := s.Client().AuditEvent.Query().Count(ctx); err != nil {
			t.Errorf("the re-created table does not work: %v", err)
		}
	})
}

// Stores in one process (parallel tests, say) may migrate at the same time.
func TestMigrateInParallelInOneProcess(t *testing.T) {
	forEachEmptyDatabase(t, func(t *testing.T, dsn string) {
		const stores = 4
		errs := make([]error, stores)
		var wg sync.WaitGroup
		for i := range stores {
			s := open(t, dsn)
			wg.Go(func() { errs[i] = s.Migrate(context.Background()) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("store %d: %v", i, err)
			}
		}
	})
}

// Replicas that start together all migrate the same empty database, each in
// its own process; every one must succeed and leave a usable schema. The
// replicas are this test binary run again, in TestMain's replica mode.
func TestConcurrentReplicasAllMigrate(t *testing.T) {
	forEachEmptyDatabase(t, func(t *testing.T, dsn string) {
		const replicas = 6
		// Start together: each replica waits for this instant after
		// starting up, so that their inspections overlap.
		startAt := time.Now().Add(time.Second).UnixNano()
		cmds := make([]*exec.Cmd, replicas)
		outs := make([]*bytes.Buffer, replicas)
		for i := range cmds {
			cmds[i] = exec.Command(os.Args[0], "-test.run=^$")
			cmds[i].Env = append(os.Environ(),
				envReplicaDSN+"="+dsn,
				envReplicaStart+"="+strconv.FormatInt(startAt, 10))
			outs[i] = new(bytes.Buffer)
			cmds[i].Stdout, cmds[i].Stderr = outs[i], outs[i]
			if err := cmds[i].Start(); err != nil {
				t.Fatal(err)
			}
		}
		races := 0
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Errorf("replica %d: %v\n%s", i, err, outs[i])
			}
			races += strings.Count(outs[i].String(), "lost a migration race")
		}
		t.Logf("%d replicas lost a race and planned again", races)
		s := open(t, dsn)
		if err := s.Migrate(context.Background()); err != nil {
			t.Fatalf("Migrate after the replicas: %v", err)
		}
		if err := s.InTx(context.Background(), createTenant("acme")); err != nil {
			t.Errorf("writing after the concurrent migrations: %v", err)
		}
	})
}

const (
	envReplicaDSN   = "TOLLGATE_STORE_TEST_REPLICA_DSN"
	envReplicaStart = "TOLLGATE_STORE_TEST_REPLICA_START"
)

// TestMain runs the test binary as a migrating replica when asked to by
// TestConcurrentReplicasAllMigrate.
func TestMain(m *testing.M) {
	if dsn := os.Getenv(envReplicaDSN); dsn != "" {
		os.Exit(runReplica(dsn, os.Getenv(envReplicaStart)))
	}
	os.Exit(m.Run())
}

func runReplica(dsn, startAt string) (code int) {
	ctx := context.Background()
	s, err := store.Open(ctx, dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := s.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}()
	if ns, err := strconv.ParseInt(startAt, 10, 64); err == nil {
		time.Sleep(time.Until(time.Unix(0, ns)))
	}
	if err := s.Migrate(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func forEachEmptyDatabase(t *testing.T, f func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, storetest.SQLiteDSN(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, storetest.PostgresDSN(t)) })
}

func open(t *testing.T, dsn string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing the store: %v", err)
		}
	})
	return s
}

func indexExists(t *testing.T, s *store.Store, name string) bool {
	t.Helper()
	q := "SELECT count(*) FROM pg_indexes WHERE indexname = $1"
	if s.Dialect() == store.SQLite {
		q = "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?"
	}
	var n int
	if err := s.DB().QueryRowContext(context.Background(), q, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}
