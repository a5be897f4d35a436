package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// Revision is a named counter. The "config" revision is incremented in the
// same transaction as every change to what the control plane serves, so
// that every control-plane replica notices a change made through another by
// polling one row: a change feed that works the same on CockroachDB,
// PostgreSQL and SQLite (CockroachDB has no LISTEN/NOTIFY).
type Revision struct{ ent.Schema }

func (Revision) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").NotEmpty().MaxLen(63).Immutable(),
		field.Int64("value").Default(0),
	}
}
