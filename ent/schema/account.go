package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Account is a person who belongs to a tenant.
type Account struct{ ent.Schema }

func (Account) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, timeMixin{}} }

func (Account) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("tenant_id", uuidType).Immutable(),
		// email is stored lower-cased so that uniqueness is case-insensitive on
		// every dialect.
		field.String("email").NotEmpty().MaxLen(320),
		field.String("name").Default("").MaxLen(200),
		field.Enum("role").Values("owner", "admin", "member", "viewer").Default("member"),
		// restricted keeps the account's data but refuses every request made
		// with its keys (the data subject's right to restriction), until it
		// is lifted. Set by PrivacyService; the data plane reads it per key.
		field.Bool("restricted").Default(false),
	}
}

func (Account) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("tenant", Tenant.Type).Ref("accounts").Field("tenant_id").Unique().Required().Immutable(),
		edge.To("api_keys", APIKey.Type),
	}
}

func (Account) Indexes() []ent.Index {
	return []ent.Index{index.Fields("tenant_id", "email").Unique()}
}
