package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/mixin"
	"github.com/google/uuid"
)

// idMixin gives every entity a random (v4) UUID primary key. Random keys spread
// writes across CockroachDB ranges; sequential keys would make one range hot.
type idMixin struct{ mixin.Schema }

func (idMixin) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", uuid.UUID{}).Default(uuid.New).Immutable(),
	}
}

// timeMixin records creation and last update times in UTC.
type timeMixin struct{ mixin.Schema }

func (timeMixin) Fields() []ent.Field {
	return []ent.Field{
		field.Time("created_at").Default(now).Immutable(),
		field.Time("updated_at").Default(now).UpdateDefault(now),
	}
}

func now() time.Time { return time.Now().UTC() }
