package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// PasswordToken is a single-use link that sets an account's password, sent
// by e-mail (a reset, or the first password of a new account). Only its
// hash is stored.
type PasswordToken struct{ ent.Schema }

func (PasswordToken) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, timeMixin{}} }

func (PasswordToken) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("account_id", uuidType).Immutable(),
		field.Bytes("hash").Unique().Immutable().Sensitive(),
		field.Time("expires_at").Immutable(),
		field.Time("used_at").Optional().Nillable(),
	}
}

func (PasswordToken) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("account", Account.Type).Ref("password_tokens").Field("account_id").Unique().Required().Immutable(),
	}
}

func (PasswordToken) Indexes() []ent.Index {
	return []ent.Index{index.Fields("account_id"), index.Fields("expires_at")}
}
