package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// NotificationEndpoint is where one tenant wants to hear about events
// (budgets, expiring keys, invoices, security notices): a webhook URL,
// whose deliveries are signed with the endpoint's secret, or a list of
// e-mail recipients (docs/notifications.md).
type NotificationEndpoint struct{ ent.Schema }

func (NotificationEndpoint) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, timeMixin{}} }

func (NotificationEndpoint) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("tenant_id", uuidType).Immutable(),
		field.String("name").NotEmpty().MaxLen(63),
		field.Enum("kind").Values("webhook", "email").Immutable(),
		// url is the webhook's URL; empty for e-mail.
		field.String("url").Default("").MaxLen(2048),
		// secret is the webhook's HMAC signing key, sealed by the keyring
		// (bound to the endpoint id) like provider credentials: deliveries
		// need it back, so it cannot be a hash. Empty for e-mail.
		field.Bytes("secret").Optional().Sensitive(),
		field.String("secret_key_id").Default(""),
		// secret_prefix is the secret's first characters, to tell which
		// secret a receiver holds.
		field.String("secret_prefix").Default("").MaxLen(32),
		// email_recipients are the addresses of an e-mail endpoint.
		field.Strings("email_recipients").Optional(),
		// event_types the endpoint wants; empty means every type.
		field.Strings("event_types").Optional(),
		field.Bool("disabled").Default(false),
	}
}

func (NotificationEndpoint) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("tenant", Tenant.Type).Ref("notification_endpoints").Field("tenant_id").Unique().Required().Immutable(),
		// An endpoint's deliveries go with it: their log describes an
		// endpoint that no longer exists.
		edge.To("notifications", Notification.Type).Annotations(entsql.Annotation{OnDelete: entsql.Cascade}),
	}
}

func (NotificationEndpoint) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("tenant_id", "name").Unique(),
	}
}
