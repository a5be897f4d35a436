package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// DataKey is a tenant's content-encryption key (envelope encryption): 32
// random bytes that seal the tenant's ContentLog rows, stored only sealed by
// the master key. Erasing the tenant deletes this row, which leaves every copy
// of its content, in the store or in a backup, unreadable (crypto-shredding;
// docs/privacy.md says what that needs of backups and master key rotation).
type DataKey struct{ ent.Schema }

func (DataKey) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

func (DataKey) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("tenant_id", uuidType).Unique().Immutable(),
		// wrapped is the key sealed by the master key (keyring format), bound
		// to this row's id and tenant by its associated data.
		field.Bytes("wrapped").NotEmpty().Sensitive(),
		// master_key_id repeats the id of the master key that sealed wrapped,
		// so that a rotation finds the keys still sealed by an old one.
		field.String("master_key_id").NotEmpty(),
		field.Time("created_at").Default(now).Immutable(),
	}
}

func (DataKey) Edges() []ent.Edge {
	return []ent.Edge{
		// Deleting a tenant, by any path, destroys its data key with it.
		edge.From("tenant", Tenant.Type).Ref("data_key").Field("tenant_id").Unique().Required().Immutable().
			Annotations(entsql.Annotation{OnDelete: entsql.Cascade}),
	}
}

func (DataKey) Indexes() []ent.Index {
	return []ent.Index{index.Fields("master_key_id")}
}
