package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// JobLease is the lease on one background job of the control plane (a purge,
// the monthly invoices, notification delivery). Every replica runs the same
// jobs; the replica whose lease is live runs the job, and renews the lease
// while it does. The row also records when the job last finished, so that
// the job's interval holds across replicas and restarts.
type JobLease struct{ ent.Schema }

func (JobLease) Fields() []ent.Field {
	return []ent.Field{
		// id is the job's name, e.g. "privacy.purge".
		field.String("id").NotEmpty().MaxLen(100).Immutable(),
		// holder names the replica that holds or last held the lease.
		field.String("holder").Default("").MaxLen(256),
		// expires_at is when the lease lapses unless renewed; a finished
		// run sets it to the finish time, releasing the lease.
		field.Time("expires_at"),
		field.Time("started_at").Optional().Nillable(),
		field.Time("finished_at").Optional().Nillable(),
		// last_error is the error of the last finished run, or empty.
		field.String("last_error").Default("").MaxLen(2000),
		field.Int64("runs").Default(0).NonNegative(),
	}
}
