package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

var uuidType = uuid.UUID{}

// APIKey is a data-plane credential. Only a hash of the secret is stored; the
// secret itself is shown once, when the key is created.
type APIKey struct{ ent.Schema }

func (APIKey) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, timeMixin{}} }

func (APIKey) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("tenant_id", uuidType).Immutable(),
		field.UUID("account_id", uuidType).Optional().Nillable(),
		field.String("name").NotEmpty().MaxLen(200),
		// prefix is the start of the secret, enough to recognise a key in a list
		// and far too short to use it. Both change when the key is rotated.
		field.String("prefix").NotEmpty(),
		field.Bytes("hash").Unique().Sensitive(),
		field.Strings("allowed_models").Optional(),
		field.Time("expires_at").Optional().Nillable(),
		field.Time("revoked_at").Optional().Nillable(),
		field.Time("last_used_at").Optional().Nillable(),
	}
}

func (APIKey) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("tenant", Tenant.Type).Ref("api_keys").Field("tenant_id").Unique().Required().Immutable(),
		edge.From("account", Account.Type).Ref("api_keys").Field("account_id").Unique(),
		edge.To("policy", GatewayPolicy.Type).Unique(),
	}
}

func (APIKey) Indexes() []ent.Index {
	return []ent.Index{index.Fields("tenant_id", "name")}
}
