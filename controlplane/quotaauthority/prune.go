package quotaauthority

import (
	"context"
	"fmt"
	"time"

	quotav1 "github.com/tollgate-dev/tollgate/api/tollgate/quota/v1"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/predicate"
	"github.com/tollgate-dev/tollgate/ent/quotacounter"
	"github.com/tollgate-dev/tollgate/ent/quotalease"
)

// How long counters of past windows are kept (for the admin API's view of
// recent use), and ended leases (to answer a late report).
const (
	keepMinuteWindows = time.Hour
	keepDayWindows    = 62 * 24 * time.Hour
	keepMonthWindows  = 400 * 24 * time.Hour
	keepEndedLeases   = time.Hour
)

// PruneEvery is how often the control plane runs Prune (as the background
// job "quota.prune"; see controlplane/jobs).
const PruneEvery = 10 * time.Minute

// Prune deletes the counters of windows that ended long enough before now
// (minutes after an hour, days after 62 days, months after 400 days; a
// total never), with their leases, and leases that ended over an hour ago.
// It returns how many rows it deleted.
func (a *Authority) Prune(ctx context.Context, now time.Time) (int, error) {
	now = now.UTC()
	old := quotacounter.Or(
		quotacounter.And(quotacounter.MeterIn(quotav1.Meter_METER_REQUESTS_PER_MINUTE.String(), quotav1.Meter_METER_TOKENS_PER_MINUTE.String()),
			quotacounter.WindowStartLT(now.Add(-keepMinuteWindows))),
		quotacounter.And(quotacounter.Meter(quotav1.Meter_METER_DAY_BUDGET.String()), quotacounter.WindowStartLT(now.Add(-keepDayWindows))),
		quotacounter.And(quotacounter.Meter(quotav1.Meter_METER_MONTH_BUDGET.String()), quotacounter.WindowStartLT(now.Add(-keepMonthWindows))),
	)
	var n int
	err := a.store.InTx(ctx, func(tx *ent.Tx) error {
		n = 0
		ids, err := tx.QuotaCounter.Query().Where(old).IDs(ctx)
		if err != nil {
			return fmt.Errorf("finding old counters: %w", err)
		}
		// Ended leases of live counters are kept an hour to answer a late
		// report; a lease still live on a current counter is never deleted
		// here (reclaiming it charges its in-flight units).
		gone := []predicate.QuotaLease{quotalease.And(quotalease.Ended(true), quotalease.UpdatedAtLT(now.Add(-keepEndedLeases)))}
		if len(ids) > 0 {
			gone = append(gone, quotalease.CounterIDIn(ids...))
		}
		d, err := tx.QuotaLease.Delete().Where(quotalease.Or(gone...)).Exec(ctx)
		if err != nil {
			return fmt.Errorf("deleting leases: %w", err)
		}
		n += d
		if len(ids) > 0 {
			if d, err = tx.QuotaCounter.Delete().Where(quotacounter.IDIn(ids...)).Exec(ctx); err != nil {
				return fmt.Errorf("deleting counters: %w", err)
			}
			n += d
		}
		return nil
	})
	return n, err
}
