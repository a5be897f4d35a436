package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// QuotaCounter is the quota authority's count of one meter of one subject
// (a tenant or a key) in one window: what has been settled, and what live
// leases hold (docs/policy.md, "Across replicas"). Subjects are referred to
// by id without foreign keys: a count outlives nothing it must not, and a
// deleted key's counters simply stop being asked for.
type QuotaCounter struct{ ent.Schema }

func (QuotaCounter) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, timeMixin{}} }

func (QuotaCounter) Fields() []ent.Field {
	return []ent.Field{
		field.String("subject_kind").NotEmpty().MaxLen(16).Immutable(),
		field.String("subject_id").NotEmpty().MaxLen(128).Immutable(),
		field.String("meter").NotEmpty().MaxLen(32).Immutable(),
		// The window's start in UTC (the minute, day, first of the month;
		// the Unix epoch for a total), so that a new window is a new row
		// and an old one is never rolled back.
		field.Time("window_start").Immutable(),
		// Units settled: only ever grows.
		field.Int64("settled").Default(0),
		// Units held by live leases (in flight and free).
		field.Int64("held").Default(0),
		// When settled spend first reached the budget's soft limit in this
		// window: the crossing is reported once per window.
		field.Time("soft_limit_reached_at").Optional().Nillable(),
		// When the budget was first found exhausted in this window (its
		// hard limit leaves less than a waiting request needs): likewise
		// reported once per window.
		field.Time("exhausted_at").Optional().Nillable(),
	}
}

func (QuotaCounter) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("subject_kind", "subject_id", "meter", "window_start").Unique(),
		// Old windows are purged by age.
		index.Fields("window_start"),
	}
}
