package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Invoice is one tenant's bill for one calendar month (UTC), computed from
// its usage records at the prices in force when each request arrived
// (controlplane/billing). Amounts are integer micro-dollars; the tenant's
// currency and the exchange rate used are recorded so that the invoice can
// be reproduced. An issued invoice is never recomputed: its lines and
// totals are immutable, only its status moves on (issued → paid or void).
//
// The tenant is referred to by id without a foreign key: invoices outlive
// deleted tenants, as usage does. The billing contact is copied onto the
// invoice in explicit columns (billing_name, billing_email) so that an
// erasure can blank them without touching the amounts.
type Invoice struct{ ent.Schema }

func (Invoice) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}, timeMixin{}} }

func (Invoice) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("tenant_id", uuidType).Immutable(),
		// For people: TG-YYYYMM-<tenant slug>. Not unique (a slug may be
		// reused after its tenant was deleted); the id is the reference.
		field.String("number").NotEmpty().MaxLen(100).Immutable(),
		// [period_start, period_end): the first instants of the month and
		// of the next, UTC.
		field.Time("period_start").Immutable(),
		field.Time("period_end").Immutable(),
		field.Enum("status").Values("draft", "issued", "paid", "void").Default("draft"),
		// ISO 4217, and the operator's rate at creation: units of currency
		// per US dollar, times a million (EUR at 0.92 is 920000; USD is
		// 1000000).
		field.String("currency").MaxLen(3).Immutable(),
		field.Int64("exchange_rate_micros").Positive().Immutable(),
		// Sum of the lines in micro-dollars: equal to the sum of the cost
		// of the usage records it bills (the month's, and late records of
		// earlier months).
		field.Int64("total_micros").Immutable(),
		// Sum of the lines converted one by one, in micro-units of currency.
		field.Int64("total_currency_micros").Immutable(),
		// Usage records the invoice adds up: the month's, and the late
		// records of earlier months it bills as prior-period usage.
		field.Int64("requests").NonNegative().Immutable(),
		// Billing contact at creation; personal data (see above).
		field.String("billing_name").Default("").MaxLen(200),
		field.String("billing_email").Default("").MaxLen(320),
		field.String("billing_reference").Default("").MaxLen(200),
		field.Time("issued_at").Optional().Nillable(),
		field.Time("paid_at").Optional().Nillable(),
		field.Time("voided_at").Optional().Nillable(),
	}
}

func (Invoice) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("lines", InvoiceLine.Type).Annotations(entsql.Annotation{OnDelete: entsql.Cascade}),
	}
}

func (Invoice) Indexes() []ent.Index {
	return []ent.Index{
		// One invoice per tenant and month, whichever replica or run
		// creates it: the second insert fails.
		index.Fields("tenant_id", "period_start").Unique(),
		index.Fields("period_start"),
	}
}

// InvoiceLine is one model's tokens of one kind at one price, or the
// model's adjustment (the difference between the charges recorded at
// request time and the priced lines: per-request rounding, or usage at a
// price no longer known).
type InvoiceLine struct{ ent.Schema }

func (InvoiceLine) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

func (InvoiceLine) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("invoice_id", uuidType).Immutable(),
		// Order on the invoice.
		field.Int("position").NonNegative().Immutable(),
		field.String("model").Default("").Immutable(),
		field.Enum("kind").Values("input", "cached_input", "output", "adjustment").Immutable(),
		// When the price of this line took effect; unset for adjustments.
		field.Time("price_effective_from").Optional().Nillable().Immutable(),
		field.Int64("unit_price_micros_per_mtok").Default(0).NonNegative().Immutable(),
		// Tokens; 0 for adjustments.
		field.Int64("quantity").Default(0).NonNegative().Immutable(),
		field.Int64("amount_micros").Immutable(),
		field.Int64("amount_currency_micros").Immutable(),
		// Prior-period usage: the first instant of the month (UTC) whose
		// late records the line bills. Unset for the invoice's own month.
		field.Time("service_period_start").Optional().Nillable().Immutable(),
	}
}

func (InvoiceLine) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("invoice", Invoice.Type).Ref("lines").Field("invoice_id").Unique().Required().Immutable(),
	}
}

func (InvoiceLine) Indexes() []ent.Index {
	return []ent.Index{index.Fields("invoice_id", "position").Unique()}
}
