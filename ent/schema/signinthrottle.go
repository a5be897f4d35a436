package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// SignInThrottle counts sign-in attempts from one client address in one
// window, so that every control-plane replica enforces the same per-address
// limit (controlplane/signin). The address is stored only as a keyed hash;
// rows are pruned two windows after they start (signin.prune).
type SignInThrottle struct{ ent.Schema }

func (SignInThrottle) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

func (SignInThrottle) Fields() []ent.Field {
	return []ent.Field{
		// addr is an HMAC of the client's address (an IPv6 address's /64
		// network), keyed with a secret every replica shares: the table
		// tells nobody who tried to sign in.
		field.Bytes("addr").NotEmpty().MaxLen(32).Immutable(),
		// window_start is the window's start in UTC, a multiple of the
		// window's length, so that every replica counts into the same row.
		field.Time("window_start").Immutable(),
		field.Int64("attempts").Default(0).NonNegative(),
	}
}

func (SignInThrottle) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("addr", "window_start").Unique(),
		// Old windows are pruned by age.
		index.Fields("window_start"),
	}
}
