package store_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent"
)

// Every recorded change moves the version, concurrent ones included, and a
// rolled-back one does not: the version is how other replicas learn of a
// change, so a missed move could hide one.
func TestConfigVersionMovesWithEveryChange(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		ctx := t.Context()
		version := func() string {
			t.Helper()
			v, err := s.ConfigVersion(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		seen := map[string]bool{version(): true}
		record := func() error {
			return s.InTx(ctx, func(tx *ent.Tx) error { return store.RecordConfigChange(ctx, tx) })
		}
		for range 3 {
			if err := record(); err != nil {
				t.Fatal(err)
			}
			v := version()
			if seen[v] {
				t.Fatalf("version %q repeated after a change", v)
			}
			seen[v] = true
		}

		const n = 20
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() { errs <- record() })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent change: %v", err)
			}
		}
		if got, err := s.Client().ConfigChange.Query().Count(ctx); err != nil || got != n+3 {
			t.Errorf("log holds %d entries (%v), want %d", got, err, n+3)
		}

		before := version()
		_ = s.InTx(ctx, func(tx *ent.Tx) error {
			if err := store.RecordConfigChange(ctx, tx); err != nil {
				return err
			}
			return errors.New("roll back")
		})
		if version() != before {
			t.Error("a rolled-back change moved the version")
		}

		if _, err := s.PruneConfigChanges(ctx, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if v := version(); v == before {
			t.Error("pruning did not move the version")
		}
	})
}
