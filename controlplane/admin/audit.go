package admin

import (
	"context"

	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/ent"
)

// event describes one mutation for the audit log. Only field names are
// recorded, never values: an audit log must not become a second copy of
// personal data or secrets.
type event struct {
	action     string // e.g. "key.create"
	targetType string // e.g. "key"
	targetID   uuid.UUID
	tenantID   *uuid.UUID // the tenant the target belongs to; nil for platform objects
	fields     []string
}

// record writes e inside tx, so the event lands if and only if the change does.
func record(ctx context.Context, tx *ent.Tx, p Principal, e event) error {
	c := tx.AuditEvent.Create().
		SetActor(p.Actor()).
		SetAction(e.action).
		SetTargetType(e.targetType).
		SetTargetID(e.targetID.String()).
		SetNillableTenantID(e.tenantID)
	if len(e.fields) > 0 {
		c.SetChangedFields(e.fields)
	}
	return c.Exec(ctx)
}

func ptr[T any](v T) *T { return &v }
