package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Provider is an upstream model API endpoint and the credential to call it.
// A provider without a tenant belongs to the platform and may serve every
// tenant; one with a tenant serves only that tenant.
type Provider struct{ ent.Schema }

func (Provider) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, timeMixin{}} }

func (Provider) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("tenant_id", uuidType).Optional().Nillable().Immutable(),
		field.String("name").NotEmpty().MaxLen(63),
		field.Enum("kind").Values("openai", "anthropic", "gemini", "azure_openai", "openai_compatible").Immutable(),
		field.String("base_url").NotEmpty().MaxLen(2048),
		// credential is sealed by the keyring (AES-256-GCM, key id prefix),
		// bound to the provider id. Empty for servers that need no credential.
		field.Bytes("credential").Optional().Sensitive(),
		field.String("credential_key_id").Default(""),
		// api_version is sent by Azure OpenAI deployments as ?api-version=.
		field.String("api_version").Default("").MaxLen(64),
	}
}

func (Provider) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("tenant", Tenant.Type).Ref("providers").Field("tenant_id").Unique().Immutable(),
		edge.To("deployments", ModelDeployment.Type),
	}
}

func (Provider) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("tenant_id", "name").Unique(),
		// NULLs are distinct in a unique index, so platform providers need
		// their own partial index to keep names unique.
		index.Fields("name").Unique().Annotations(entsql.IndexWhere("tenant_id IS NULL")),
	}
}
