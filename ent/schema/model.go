package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Model is the public model name clients ask for, served by one or more
// deployments. A model without a tenant is offered to every tenant; a
// tenant's own model of the same name takes precedence for that tenant.
type Model struct{ ent.Schema }

func (Model) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, timeMixin{}} }

func (Model) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("tenant_id", uuidType).Optional().Nillable().Immutable(),
		field.String("name").NotEmpty().MaxLen(200),
		field.Int64("context_window").Default(0).NonNegative(),
	}
}

func (Model) Edges() []ent.Edge {
	cascade := entsql.Annotation{OnDelete: entsql.Cascade}
	return []ent.Edge{
		edge.From("tenant", Tenant.Type).Ref("models").Field("tenant_id").Unique().Immutable(),
		edge.To("deployments", ModelDeployment.Type).Annotations(cascade),
		edge.To("prices", ModelPrice.Type).Annotations(cascade),
	}
}

func (Model) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("tenant_id", "name").Unique(),
		index.Fields("name").Unique().Annotations(entsql.IndexWhere("tenant_id IS NULL")),
	}
}
