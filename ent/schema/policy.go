package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"

	"github.com/tollgate-dev/tollgate/controlplane/policy"
)

// GatewayPolicy (the API's Policy; ent reserves the name) holds the limits, allow lists and privacy settings of one tenant or
// one key: exactly one of tenant_id and api_key_id is set. The settings are a
// JSON document so that new kinds of limit need no schema change; the
// controlplane/policy package owns its shape and validation.
type GatewayPolicy struct{ ent.Schema }

func (GatewayPolicy) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, timeMixin{}} }

func (GatewayPolicy) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("tenant_id", uuidType).Optional().Nillable().Unique().Immutable(),
		field.UUID("api_key_id", uuidType).Optional().Nillable().Unique().Immutable(),
		field.JSON("spec", policy.Spec{}),
	}
}

func (GatewayPolicy) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("tenant", Tenant.Type).Ref("policy").Field("tenant_id").Unique().Immutable(),
		edge.From("api_key", APIKey.Type).Ref("policy").Field("api_key_id").Unique().Immutable().
			Annotations(entsql.Annotation{OnDelete: entsql.Cascade}),
	}
}
