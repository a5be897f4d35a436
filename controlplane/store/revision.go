package store

import (
	"context"
	"fmt"

	"entgo.io/ent/dialect/sql"

	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/revision"
)

// ConfigRevision counts changes to what the control plane serves (tenants,
// keys, providers, models, policies).
const ConfigRevision = "config"

// BumpRevision increments the named counter inside tx, creating it at 1.
// Call it in the transaction that makes the change, so that the new value
// becomes visible exactly when the change does.
func BumpRevision(ctx context.Context, tx *ent.Tx, name string) error {
	err := tx.Revision.Create().SetID(name).SetValue(1).
		OnConflict(sql.ConflictColumns(revision.FieldID)).
		AddValue(1).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: bumping revision %s: %w", name, err)
	}
	return nil
}

// Revision reads the named counter; 0 if nothing was ever counted.
func (s *Store) Revision(ctx context.Context, name string) (int64, error) {
	r, err := s.client.Revision.Get(ctx, name)
	if ent.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: reading revision %s: %w", name, err)
	}
	return r.Value, nil
}
