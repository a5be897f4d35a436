package store

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/configchange"
)

// RecordConfigChange notes, inside tx, that what the control plane serves
// (tenants, keys, providers, models, policies) changed. Call it in the
// transaction that makes the change, so the note becomes visible exactly
// when the change does. It inserts a row and so never conflicts with
// another transaction doing the same.
func RecordConfigChange(ctx context.Context, tx *ent.Tx) error {
	if err := tx.ConfigChange.Create().Exec(ctx); err != nil {
		return fmt.Errorf("store: recording a config change: %w", err)
	}
	return nil
}

// ConfigVersion summarises the change log in a string that differs
// whenever a change was recorded (or old entries were pruned): its size and
// its newest entry's time. Comparing sizes as well as times makes it safe
// against clocks that differ between replicas.
func (s *Store) ConfigVersion(ctx context.Context) (string, error) {
	var rows []struct {
		Count int64     `json:"count"`
		Max   time.Time `json:"max"`
	}
	err := s.client.ConfigChange.Query().
		Aggregate(ent.Count(), ent.Max(configchange.FieldCreatedAt)).
		Scan(ctx, &rows)
	if err != nil {
		// An empty log yields NULL for max, which some drivers will not scan
		// into a time; fall back to the count alone.
		n, cerr := s.client.ConfigChange.Query().Count(ctx)
		if cerr != nil {
			return "", fmt.Errorf("store: reading the config change log: %w", err)
		}
		return fmt.Sprintf("%d", n), nil
	}
	if len(rows) == 0 {
		return "0", nil
	}
	return fmt.Sprintf("%d/%d", rows[0].Count, rows[0].Max.UnixNano()), nil
}

// PruneConfigChanges deletes log entries older than before, which no
// replica needs once it has seen a newer version.
func (s *Store) PruneConfigChanges(ctx context.Context, before time.Time) (int, error) {
	n, err := s.client.ConfigChange.Delete().Where(configchange.CreatedAtLT(before)).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: pruning the config change log: %w", err)
	}
	return n, nil
}
