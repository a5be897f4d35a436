package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// AuditEvent records one mutation: who did what to which object, when. It
// names fields that changed but never copies their values, so personal data
// and secrets stay out of the audit log.
type AuditEvent struct{ ent.Schema }

func (AuditEvent) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

func (AuditEvent) Fields() []ent.Field {
	return []ent.Field{
		field.Time("time").Default(now).Immutable(),
		// actor is "operator" or "admin-token:<id>".
		field.String("actor").NotEmpty().Immutable(),
		// tenant_id is the tenant the change belongs to, if any; tenant admins
		// see only their own tenant's events.
		field.UUID("tenant_id", uuidType).Optional().Nillable().Immutable(),
		field.String("action").NotEmpty().Immutable(),
		field.String("target_type").NotEmpty().Immutable(),
		field.String("target_id").Default("").Immutable(),
		field.Strings("changed_fields").Optional().Immutable(),
	}
}

func (AuditEvent) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("tenant_id", "time"),
		index.Fields("time"),
	}
}
