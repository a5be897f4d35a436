package contentlog

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/policy"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/contentlog"
	"github.com/tollgate-dev/tollgate/ent/gatewaypolicy"
	"github.com/tollgate-dev/tollgate/ent/tenant"
)

// MaxBodyBytes bounds each body the control plane stores, whatever a sender
// captured: ext_proc's capture limit cannot be set above it.
const MaxBodyBytes = 1 << 20

// DefaultMaxDays is the operator's default cap on content retention.
const DefaultMaxDays = 30

// Record is one usage record's content on its way to the store.
type Record struct {
	RequestID string
	TenantID  uuid.UUID
	KeyID     *uuid.UUID
	Time      time.Time // when the request arrived
	Content   *usagev1.Content
}

// Writer stores the content that usage records carry, in the usage batch's
// transaction, when the policy in the store still keeps it.
type Writer struct {
	vault   *Vault
	maxDays int32
	log     *slog.Logger
	now     func() time.Time
}

// NewWriter returns a Writer that keeps content for at most maxDays days
// (the operator's cap on every policy's content_retention_days; 0 means
// DefaultMaxDays).
func NewWriter(v *Vault, maxDays int32, log *slog.Logger) *Writer {
	if maxDays <= 0 {
		maxDays = DefaultMaxDays
	}
	if log == nil {
		log = slog.Default()
	}
	return &Writer{vault: v, maxDays: maxDays, log: log, now: time.Now}
}

// MaxDays is the operator's cap.
func (w *Writer) MaxDays() int32 { return w.maxDays }

// insertChunk bounds the rows of one INSERT (10 parameters a row).
const insertChunk = 500

// Write seals and inserts recs' content in tx. Content is dropped, not
// stored, when the effective retention in the store is not full (the policy
// changed since ext_proc captured it), when the tenant no longer exists, or
// when its retention period has already passed. A request whose content is
// already stored (a resent batch) is skipped.
func (w *Writer) Write(ctx context.Context, tx *ent.Tx, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	retention, err := w.retentions(ctx, tx, recs)
	if err != nil {
		return err
	}
	keys := map[uuid.UUID]*DataKey{}
	now := w.now()
	var builders []*ent.ContentLogCreate
	dropped := 0
	for _, r := range recs {
		ret, ok := retention.of(r.TenantID, r.KeyID)
		if !ok || ret.Content != policy.RetentionFull || ret.ContentDays <= 0 {
			dropped++
			continue
		}
		expires := r.Time.Add(time.Duration(min(ret.ContentDays, w.maxDays)) * 24 * time.Hour)
		if !expires.After(now) {
			dropped++
			continue
		}
		k := keys[r.TenantID]
		if k == nil {
			if k, err = w.vault.ForTenant(ctx, tx, r.TenantID); err != nil {
				return err
			}
			keys[r.TenantID] = k
		}
		c, truncated := capBodies(r.Content)
		sealed, err := k.Seal(r.RequestID, c)
		if err != nil {
			return err
		}
		builders = append(builders, tx.ContentLog.Create().
			SetRequestID(r.RequestID).
			SetTenantID(r.TenantID).
			SetNillableAPIKeyID(r.KeyID).
			SetDataKeyID(k.ID).
			SetSealed(sealed).
			SetRequestBytes(int64(len(c.GetRequestBody()))).
			SetResponseBytes(int64(len(c.GetResponseBody()))).
			SetTruncated(truncated).
			SetCreatedAt(r.Time).
			SetExpiresAt(expires))
	}
	if dropped > 0 {
		w.log.DebugContext(ctx, "content not kept: the policy in the store does not keep it (any more)", "records", dropped)
	}
	for start := 0; start < len(builders); start += insertChunk {
		err := tx.ContentLog.CreateBulk(builders[start:min(start+insertChunk, len(builders))]...).
			OnConflict(entsql.ConflictColumns(contentlog.FieldRequestID), entsql.DoNothing()).
			Exec(ctx)
		if err != nil {
			return fmt.Errorf("inserting content: %w", err)
		}
	}
	return nil
}

// capBodies cuts bodies longer than MaxBodyBytes.
func capBodies(c *usagev1.Content) (*usagev1.Content, bool) {
	req, resp := c.GetRequestBody(), c.GetResponseBody()
	cut := c.GetTruncated()
	if len(req) > MaxBodyBytes {
		req, cut = req[:MaxBodyBytes], true
	}
	if len(resp) > MaxBodyBytes {
		resp, cut = resp[:MaxBodyBytes], true
	}
	return &usagev1.Content{RequestBody: req, ResponseBody: resp, Truncated: cut}, cut
}

// retentions is the stored retention of the batch's tenants and keys.
type retentions struct {
	tenants map[uuid.UUID]policy.Retention // present: the tenant exists
	keys    map[uuid.UUID]policy.Retention
}

func (r retentions) of(tenantID uuid.UUID, keyID *uuid.UUID) (policy.Retention, bool) {
	t, ok := r.tenants[tenantID]
	if !ok {
		return policy.Retention{}, false
	}
	var k policy.Retention
	if keyID != nil {
		k = r.keys[*keyID]
	}
	return policy.EffectiveRetention(t, k), true
}

func (w *Writer) retentions(ctx context.Context, tx *ent.Tx, recs []Record) (retentions, error) {
	out := retentions{tenants: map[uuid.UUID]policy.Retention{}, keys: map[uuid.UUID]policy.Retention{}}
	var tenantIDs, keyIDs []uuid.UUID
	seen := map[uuid.UUID]bool{}
	for _, r := range recs {
		if !seen[r.TenantID] {
			seen[r.TenantID] = true
			tenantIDs = append(tenantIDs, r.TenantID)
		}
		if r.KeyID != nil && !seen[*r.KeyID] {
			seen[*r.KeyID] = true
			keyIDs = append(keyIDs, *r.KeyID)
		}
	}
	existing, err := tx.Tenant.Query().Where(tenant.IDIn(tenantIDs...)).IDs(ctx)
	if err != nil {
		return out, fmt.Errorf("reading tenants: %w", err)
	}
	for _, id := range existing {
		out.tenants[id] = policy.Retention{}
	}
	pols, err := tx.GatewayPolicy.Query().Where(gatewaypolicy.Or(
		gatewaypolicy.TenantIDIn(existing...), gatewaypolicy.APIKeyIDIn(keyIDs...))).All(ctx)
	if err != nil {
		return out, fmt.Errorf("reading policies: %w", err)
	}
	for _, p := range pols {
		switch {
		case p.TenantID != nil:
			out.tenants[*p.TenantID] = p.Spec.Retention
		case p.APIKeyID != nil:
			out.keys[*p.APIKeyID] = p.Spec.Retention
		}
	}
	return out, nil
}
