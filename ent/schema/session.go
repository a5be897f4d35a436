package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Session is a signed-in browser of the web console: an account's, or the
// operator's. Only a hash of the session secret (the cookie) is stored.
type Session struct{ ent.Schema }

func (Session) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, timeMixin{}} }

func (Session) Fields() []ent.Field {
	return []ent.Field{
		// account_id is empty for the operator's sessions.
		field.UUID("account_id", uuidType).Optional().Nillable().Immutable(),
		// operator_token is a fingerprint of the operator token the session
		// was opened with, so that rotating the token ends those sessions.
		field.Bytes("operator_token").Optional().Nillable().Immutable().Sensitive(),
		field.Bytes("hash").Unique().Immutable().Sensitive(),
		// method is how the person signed in: password, sso or operator_token.
		field.Enum("method").Values("password", "sso", "operator_token").Immutable(),
		field.String("user_agent").Default("").MaxLen(200).Immutable(),
		field.Time("last_seen_at"),
		field.Time("expires_at"),
		field.Time("revoked_at").Optional().Nillable(),
	}
}

func (Session) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("account", Account.Type).Ref("sessions").Field("account_id").Unique().Immutable(),
	}
}

func (Session) Indexes() []ent.Index {
	return []ent.Index{index.Fields("account_id"), index.Fields("expires_at")}
}
