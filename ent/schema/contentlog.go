package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// ContentLog keeps one request's request and response bodies, for tenants
// whose policy retains content (retention full), until expires_at. The bodies
// are one sealed value (AES-256-GCM under the tenant's DataKey), so nothing
// readable is stored. Rows refer to their tenant without a foreign key: a
// tenant's erasure destroys its data key at once, and the purge job then
// deletes the unreadable rows in bounded batches rather than in one huge
// cascading delete.
type ContentLog struct{ ent.Schema }

func (ContentLog) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

func (ContentLog) Fields() []ent.Field {
	return []ent.Field{
		// request_id is the usage record's: unique, so that a replayed usage
		// batch stores its content once.
		field.String("request_id").NotEmpty().MaxLen(128).Unique().Immutable(),
		field.UUID("tenant_id", uuidType).Immutable(),
		field.UUID("api_key_id", uuidType).Optional().Nillable().Immutable(),
		// data_key_id is the DataKey that sealed the content.
		field.UUID("data_key_id", uuidType).Immutable(),
		// sealed is the encoded bodies, sealed with associated data that
		// binds them to this request and tenant.
		field.Bytes("sealed").Immutable().Sensitive(),
		// Sizes of the bodies as captured, and whether capture cut them.
		field.Int64("request_bytes").Default(0).NonNegative().Immutable(),
		field.Int64("response_bytes").Default(0).NonNegative().Immutable(),
		field.Bool("truncated").Default(false).Immutable(),
		// created_at is when the request arrived at the gateway.
		field.Time("created_at").Immutable(),
		field.Time("expires_at").Immutable(),
	}
}

func (ContentLog) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("tenant_id", "created_at"),
		// The purge job reads expired rows oldest first.
		index.Fields("expires_at"),
	}
}
