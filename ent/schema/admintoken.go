package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// AdminToken is an admin-API credential scoped to one tenant. The operator's
// own token is not stored here: it comes from a file or a Secret.
type AdminToken struct{ ent.Schema }

func (AdminToken) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, timeMixin{}} }

func (AdminToken) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("tenant_id", uuidType).Immutable(),
		field.String("name").NotEmpty().MaxLen(200),
		field.String("prefix").NotEmpty().Immutable(),
		field.Bytes("hash").Unique().Immutable().Sensitive(),
		field.Time("expires_at").Optional().Nillable(),
		field.Time("revoked_at").Optional().Nillable(),
	}
}

func (AdminToken) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("tenant", Tenant.Type).Ref("admin_tokens").Field("tenant_id").Unique().Required().Immutable(),
	}
}
