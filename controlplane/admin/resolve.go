package admin

import (
	"context"

	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/tenant"
)

// resolveTenant finds a tenant by id or slug that p may see. A tenant admin
// asking for another tenant gets the same NotFound as for a tenant that does
// not exist, so that ids and slugs cannot be probed.
func resolveTenant(ctx context.Context, q *ent.TenantClient, p Principal, field, ref string) (*ent.Tenant, error) {
	if ref == "" {
		return nil, invalid.Field(field, "is required: give the tenant's id or slug")
	}
	var (
		t   *ent.Tenant
		err error
	)
	if id, perr := uuid.Parse(ref); perr == nil {
		t, err = q.Get(ctx, id)
	} else {
		t, err = q.Query().Where(tenant.Slug(ref)).Only(ctx)
	}
	if ent.IsNotFound(err) {
		return nil, notFound("tenant", ref)
	}
	if err != nil {
		return nil, err
	}
	if !p.canSeeTenant(t.ID) {
		return nil, notFound("tenant", ref)
	}
	return t, nil
}

// parseID parses a UUID field of a request.
func parseID(field, v string) (uuid.UUID, error) {
	if v == "" {
		return uuid.Nil, invalid.Field(field, "is required")
	}
	id, err := uuid.Parse(v)
	if err != nil {
		return uuid.Nil, invalid.Field(field, "must be a UUID, got %q", v)
	}
	return id, nil
}

// visible reports whether p may see an object owned by tenant (nil: platform).
// Platform objects are readable by every principal.
func visible(p Principal, owner *uuid.UUID) bool {
	return owner == nil || p.canSeeTenant(*owner)
}

// writable reports whether p may change an object owned by tenant (nil:
// platform). Only the operator changes platform objects.
func writable(p Principal, owner *uuid.UUID) bool {
	if owner == nil {
		return p.Operator
	}
	return p.canSeeTenant(*owner)
}
