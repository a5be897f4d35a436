package tollgatecmd

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/tollgate-dev/tollgate/controlplane/billing"
	"github.com/tollgate-dev/tollgate/controlplane/jobs"
	"github.com/tollgate-dev/tollgate/controlplane/notify"
	"github.com/tollgate-dev/tollgate/controlplane/privacy"
	"github.com/tollgate-dev/tollgate/controlplane/quotaauthority"
	"github.com/tollgate-dev/tollgate/controlplane/signin"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/usageingest"
)

// jobDeps is what the background jobs need from the control plane.
type jobDeps struct {
	store     *store.Store
	authority *quotaauthority.Authority
	notifier  *notify.Deliverer
	purger    *privacy.Purger
	billing   *billing.Service
	sessions  *signin.Service
	rollups   *usageingest.Server // for its backfill of the rollups
}

// backgroundJobs lists the control plane's background jobs. Every replica
// registers all of them; controlplane/jobs runs each on one replica at a
// time, under a lease.
func backgroundJobs(d jobDeps) []jobs.Job {
	return []jobs.Job{
		{Name: "config.prune", Every: time.Hour, Run: func(ctx context.Context) error {
			// Entries older than a day are of no use to any replica: each
			// compares versions, not entries, and polls every second.
			_, err := d.store.PruneConfigChanges(ctx, time.Now().Add(-24*time.Hour))
			return err
		}},
		{Name: "quota.prune", Every: quotaauthority.PruneEvery, Run: func(ctx context.Context) error {
			_, err := d.authority.Prune(ctx, time.Now())
			return err
		}},
		{Name: privacy.PurgeJob, Every: privacy.PurgeEvery, Run: d.purger.Run},
		{Name: "notify.deliver", Every: 5 * time.Second, Run: d.notifier.Run},
		{Name: "notify.expiring_keys", Every: time.Hour, Run: func(ctx context.Context) error {
			_, err := notify.WarnExpiringKeys(ctx, d.store, time.Now(), notify.DefaultExpiryThresholds)
			return err
		}},
		{Name: billing.JobName, Every: time.Hour, Run: d.billing.IssueDue},
		{Name: "signin.prune", Every: time.Hour, Run: func(ctx context.Context) error {
			// Web console sessions and password links a day past their end.
			_, err := d.sessions.Prune(ctx)
			return err
		}},
		{Name: "usage.rollup_backfill", Every: time.Minute, Run: func(ctx context.Context) error {
			// Counts records stored before the rollups existed (after an
			// upgrade); with nothing to count it is one indexed query.
			_, err := d.rollups.BackfillRollups(ctx)
			return err
		}},
		{Name: "notify.prune", Every: time.Hour, Run: func(ctx context.Context) error {
			_, err := d.notifier.Prune(ctx, time.Now().Add(-notify.DeliveryRetention))
			return err
		}},
	}
}

// replicaName names this process among control-plane replicas, for job
// leases: the host name (a pod's name on Kubernetes) and the process id.
func replicaName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}
