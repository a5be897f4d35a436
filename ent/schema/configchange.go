package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// ConfigChange is one entry of an append-only log: a row is inserted in the
// same transaction as every change to what the control plane serves, so
// that every control-plane replica notices a change made through another by
// polling the log's size and newest time — a change feed that works the
// same on CockroachDB (which has no LISTEN/NOTIFY), PostgreSQL and SQLite.
// Rows are only ever inserted (and old ones pruned): a single counter row
// would make every admin transaction conflict with every other.
type ConfigChange struct{ ent.Schema }

func (ConfigChange) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

func (ConfigChange) Fields() []ent.Field {
	return []ent.Field{
		field.Time("created_at").Default(now).Immutable(),
	}
}

func (ConfigChange) Indexes() []ent.Index {
	return []ent.Index{index.Fields("created_at")}
}
