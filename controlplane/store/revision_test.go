package store_test

import (
	"sync"
	"testing"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent"
)

// Concurrent bumps all count: the revision is how other replicas learn of a
// change, so a lost increment could hide one.
func TestRevisionCountsEveryBump(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		if v, err := s.Revision(t.Context(), store.ConfigRevision); err != nil || v != 0 {
			t.Fatalf("fresh revision = %d, %v", v, err)
		}
		const n = 20
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				errs <- s.InTx(t.Context(), func(tx *ent.Tx) error { return store.BumpRevision(t.Context(), tx, store.ConfigRevision) })
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if v, err := s.Revision(t.Context(), store.ConfigRevision); err != nil || v != n {
			t.Errorf("revision = %d, %v; want %d", v, err, n)
		}
		// A rolled-back bump does not count.
		_ = s.InTx(t.Context(), func(tx *ent.Tx) error {
			if err := store.BumpRevision(t.Context(), tx, store.ConfigRevision); err != nil {
				return err
			}
			return errRollback
		})
		if v, _ := s.Revision(t.Context(), store.ConfigRevision); v != n {
			t.Errorf("after a rolled-back bump revision = %d, want %d", v, n)
		}
	})
}

var errRollback = rollbackError{}

type rollbackError struct{}

func (rollbackError) Error() string { return "roll back" }
