package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// ModelDeployment says which provider serves a model under which upstream
// name. Deployments of equal priority share traffic by weight; a lower
// priority number is tried first and the next priority is the fallback.
type ModelDeployment struct{ ent.Schema }

func (ModelDeployment) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, timeMixin{}} }

func (ModelDeployment) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("model_id", uuidType),
		field.UUID("provider_id", uuidType),
		field.String("upstream_model").NotEmpty().MaxLen(200),
		field.Int32("weight").Default(1).Positive(),
		field.Int32("priority").Default(0).NonNegative(),
		// What the provider guarantees for requests served through this
		// deployment, as the operator's contract with it says. The defaults
		// promise nothing: a deployment is only chosen for a tenant that
		// requires a guarantee once an operator has declared it.
		field.Bool("no_training").Default(false),
		field.Enum("retention").Values("unknown", "zero", "limited").Default("unknown"),
		// retention_days is how long a "limited" provider keeps requests.
		field.Int32("retention_days").Default(0).NonNegative(),
	}
}

func (ModelDeployment) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("model", Model.Type).Ref("deployments").Field("model_id").Unique().Required(),
		// A provider that still serves a deployment cannot be deleted (RESTRICT,
		// the default), so that no model is left pointing at nothing.
		edge.From("provider", Provider.Type).Ref("deployments").Field("provider_id").Unique().Required(),
	}
}

func (ModelDeployment) Indexes() []ent.Index {
	return []ent.Index{index.Fields("model_id", "provider_id", "upstream_model").Unique()}
}
