package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// QuotaLease is units of one QuotaCounter that one ext_proc replica may
// spend locally until expires_at. Its id is chosen by the replica, so that
// a report sent twice names the same lease. A lease that is not renewed
// before expires_at is reclaimed: its in-flight units are charged as
// settled and its free units return to the counter.
type QuotaLease struct{ ent.Schema }

func (QuotaLease) Mixin() []ent.Mixin { return []ent.Mixin{timeMixin{}} }

func (QuotaLease) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", uuid.UUID{}).Immutable(),
		field.UUID("counter_id", uuidType).Immutable(),
		field.String("replica").Default("").MaxLen(256),
		// The sequence number of the last report applied.
		field.Int64("seq").Default(0),
		// As last reported: settled in total, and in flight.
		field.Int64("settled").Default(0),
		field.Int64("in_flight").Default(0),
		// In flight plus the free units granted: what the counter's held
		// includes for this lease.
		field.Int64("holding").Default(0),
		field.Time("expires_at"),
		// Released or expired: the lease holds nothing and takes no more
		// reports; the row stays so that a late report is answered.
		field.Bool("ended").Default(false),
	}
}

func (QuotaLease) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("counter_id", "ended"),
		index.Fields("ended", "expires_at"),
	}
}
