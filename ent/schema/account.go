package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
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
		// restriction_reason says why, while restricted is set.
		field.String("restriction_reason").Default("").MaxLen(500),
		// password_hash is an argon2id hash in the PHC string format, salt and
		// parameters included (controlplane/signin); empty until the person
		// sets a password through an e-mailed link.
		field.String("password_hash").Default("").MaxLen(200).Sensitive(),
		// failed_sign_ins counts wrong passwords since the last good one;
		// past a few, sign-in waits until sign_in_locked_until.
		field.Int("failed_sign_ins").Default(0).NonNegative(),
		field.Time("sign_in_locked_until").Optional().Nillable(),
		// sso_subject binds the account to one OpenID Connect identity
		// ("issuer subject"), set at its first single sign-on.
		field.String("sso_subject").Optional().Nillable().MaxLen(600),
	}
}

func (Account) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("tenant", Tenant.Type).Ref("accounts").Field("tenant_id").Unique().Required().Immutable(),
		edge.To("api_keys", APIKey.Type),
		edge.To("sessions", Session.Type).Annotations(entsql.Annotation{OnDelete: entsql.Cascade}),
		edge.To("password_tokens", PasswordToken.Type).Annotations(entsql.Annotation{OnDelete: entsql.Cascade}),
	}
}

func (Account) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("tenant_id", "email").Unique(),
		// Sign-in finds an e-mail's accounts across tenants.
		index.Fields("email"),
		index.Fields("sso_subject").Unique(),
	}
}
