package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Tenant is a customer of the gateway operator: the unit of isolation, policy
// and billing.
type Tenant struct{ ent.Schema }

func (Tenant) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, timeMixin{}} }

func (Tenant) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty().MaxLen(200),
		field.String("slug").NotEmpty().MaxLen(63).Unique(),
		field.Enum("status").Values("active", "suspended", "restricted").Default("active"),
		// restriction_reason says why processing is restricted (status
		// restricted), for the tenant's people and the operator; set by
		// PrivacyService.Restrict, cleared when the restriction is lifted.
		field.String("restriction_reason").Default("").MaxLen(500),
		field.String("billing_email").Default("").MaxLen(320),
		field.String("billing_reference").Default("").MaxLen(200),
		field.String("plan").Default("").MaxLen(100),
		// ISO 4217 code of the currency the tenant's invoices are rendered
		// in; amounts are kept in micro-dollars and converted at the
		// operator's exchange rate, which each invoice records.
		field.String("currency").Default("USD").MaxLen(3),
		// The last time one of the tenant's budgets (its own or a key's)
		// crossed its soft limit, and which: the flag operators and tenant
		// admins see.
		field.Time("budget_alert_at").Optional().Nillable(),
		field.String("budget_alert").Default("").MaxLen(200),
	}
}

func (Tenant) Edges() []ent.Edge {
	cascade := entsql.Annotation{OnDelete: entsql.Cascade}
	return []ent.Edge{
		edge.To("accounts", Account.Type).Annotations(cascade),
		edge.To("api_keys", APIKey.Type).Annotations(cascade),
		edge.To("admin_tokens", AdminToken.Type).Annotations(cascade),
		edge.To("providers", Provider.Type).Annotations(cascade),
		edge.To("models", Model.Type).Annotations(cascade),
		edge.To("policy", GatewayPolicy.Type).Unique().Annotations(cascade),
		edge.To("data_key", DataKey.Type).Unique().Annotations(cascade),
		edge.To("notification_endpoints", NotificationEndpoint.Type).Annotations(cascade),
	}
}
