package notify

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/apikey"
	"github.com/tollgate-dev/tollgate/ent/notificationendpoint"
)

// DefaultExpiryThresholds are how long before a key's expiry its tenant is
// warned: a week ahead, and again a day ahead.
var DefaultExpiryThresholds = []time.Duration{7 * 24 * time.Hour, 24 * time.Hour}

// keyBatch bounds the keys one transaction warns about.
const keyBatch = 200

// WarnExpiringKeys enqueues a key.expiring event for every live key, of a
// tenant with an endpoint that wants such events, that expires within one
// of thresholds from now. Each key is warned once per threshold (and per
// expiry time: a key whose expiry is moved is warned again), and only at
// the tightest threshold it is within, so a key created to expire in an
// hour gets one warning, not two. It returns how many keys it considered.
func WarnExpiringKeys(ctx context.Context, st *store.Store, now time.Time, thresholds []time.Duration) (int, error) {
	if len(thresholds) == 0 {
		return 0, nil
	}
	ts := slices.Clone(thresholds)
	slices.Sort(ts)
	now = now.UTC()
	tenants, err := subscribedTenants(ctx, st, TypeKeyExpiring)
	if err != nil || len(tenants) == 0 {
		return 0, err
	}
	total := 0
	after := uuid.Nil
	for {
		var keys []*ent.APIKey
		err := st.InTx(ctx, func(tx *ent.Tx) error {
			var err error
			keys, err = tx.APIKey.Query().
				Where(apikey.TenantIDIn(tenants...), apikey.RevokedAtIsNil(),
					apikey.ExpiresAtGT(now), apikey.ExpiresAtLTE(now.Add(ts[len(ts)-1])),
					apikey.IDGT(after)).
				Order(ent.Asc(apikey.FieldID)).Limit(keyBatch).All(ctx)
			if err != nil {
				return fmt.Errorf("notify: finding expiring keys: %w", err)
			}
			for _, k := range keys {
				left := k.ExpiresAt.Sub(now)
				i, _ := slices.BinarySearch(ts, left)
				th := ts[i] // the tightest threshold the key is within
				err := Enqueue(ctx, tx, Event{
					Type: TypeKeyExpiring, TenantID: k.TenantID,
					Data: map[string]any{
						"key_id": k.ID.String(), "key_name": k.Name, "key_prefix": k.Prefix,
						"expires_at": k.ExpiresAt.UTC().Format(time.RFC3339), "threshold": th.String(),
					},
					DedupeKey: "key.expiring:" + k.ID.String() + ":" + strconv.FormatInt(k.ExpiresAt.Unix(), 10) + ":" + th.String(),
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += len(keys)
		if len(keys) < keyBatch || ctx.Err() != nil {
			return total, ctx.Err()
		}
		after = keys[len(keys)-1].ID
	}
}

// subscribedTenants lists the tenants with an enabled endpoint that wants
// events of type t.
func subscribedTenants(ctx context.Context, st *store.Store, t string) ([]uuid.UUID, error) {
	eps, err := st.Client().NotificationEndpoint.Query().
		Where(notificationendpoint.Disabled(false)).
		Select(notificationendpoint.FieldTenantID, notificationendpoint.FieldEventTypes).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("notify: finding endpoints for %s: %w", t, err)
	}
	seen := map[uuid.UUID]bool{}
	var out []uuid.UUID
	for _, ep := range eps {
		if Wants(ep.EventTypes, t) && !seen[ep.TenantID] {
			seen[ep.TenantID] = true
			out = append(out, ep.TenantID)
		}
	}
	return out, nil
}
