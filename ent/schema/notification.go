package schema

import (
	"encoding/json"

	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Notification is one event to be delivered to one endpoint: the outbox row,
// written in the transaction of the change that caused the event, and then
// the delivery's log entry (controlplane/notify). Its data names objects and
// amounts; it never holds request or response content.
type Notification struct{ ent.Schema }

func (Notification) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, timeMixin{}} }

func (Notification) Fields() []ent.Field {
	return []ent.Field{
		// event_id is shared by the deliveries of one event to several
		// endpoints.
		field.UUID("event_id", uuidType).Immutable(),
		field.String("event_type").NotEmpty().MaxLen(64).Immutable(),
		field.UUID("tenant_id", uuidType).Immutable(),
		field.UUID("endpoint_id", uuidType).Immutable(),
		// data is the event's JSON object, as the receiver gets it.
		field.JSON("data", json.RawMessage{}).Immutable(),
		// dedupe_key, when set, makes the event once per endpoint: a second
		// event with the same key is not enqueued (e.g. one warning per key
		// per expiry threshold).
		field.String("dedupe_key").Optional().Nillable().MaxLen(200).Immutable(),
		// pending until delivered; failed when the receiver refused it for
		// good (4xx); dead when retries ran past the maximum age.
		field.Enum("status").Values("pending", "delivered", "failed", "dead").Default("pending"),
		field.Int("attempts").Default(0).NonNegative(),
		// next_attempt_at is when a pending delivery is due. An attempt
		// moves it forward before sending, so a replica that dies
		// mid-send leaves it due again later, not never.
		field.Time("next_attempt_at"),
		field.Time("last_attempt_at").Optional().Nillable(),
		field.Time("delivered_at").Optional().Nillable(),
		field.String("last_error").Default("").MaxLen(1000),
		// response_code is the webhook's last HTTP status (0 for e-mail or
		// when no response came), or the SMTP server's reply code.
		field.Int("response_code").Default(0),
	}
}

func (Notification) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("endpoint", NotificationEndpoint.Type).Ref("notifications").Field("endpoint_id").Unique().Required().Immutable(),
	}
}

func (Notification) Indexes() []ent.Index {
	return []ent.Index{
		// The delivery job's scan: pending rows by due time.
		index.Fields("status", "next_attempt_at"),
		// The delivery log, newest first.
		index.Fields("tenant_id", "created_at"),
		index.Fields("endpoint_id", "created_at"),
		// NULL keys are distinct, so only keyed events are limited.
		index.Fields("endpoint_id", "dedupe_key").Unique(),
	}
}
