package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// ModelPrice is a model's price from effective_from until the next price
// takes effect. Prices are never edited in place, so past usage keeps the
// price it was charged at. Amounts are integer micro-dollars per million
// tokens: money is never a float.
type ModelPrice struct{ ent.Schema }

func (ModelPrice) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

func (ModelPrice) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("model_id", uuidType).Immutable(),
		field.Time("effective_from").Immutable(),
		field.Int64("input_micros_per_mtok").NonNegative().Immutable(),
		field.Int64("output_micros_per_mtok").NonNegative().Immutable(),
		field.Int64("cached_input_micros_per_mtok").NonNegative().Immutable(),
		field.Time("created_at").Default(now).Immutable(),
	}
}

func (ModelPrice) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("model", Model.Type).Ref("prices").Field("model_id").Unique().Required().Immutable(),
	}
}

func (ModelPrice) Indexes() []ent.Index {
	return []ent.Index{index.Fields("model_id", "effective_from").Unique()}
}
