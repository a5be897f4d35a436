package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// UsageRecord is one request's billable usage. Records refer to tenants, keys
// and models by id without foreign keys: they outlive deleted keys and erased
// accounts, because billing must still add up. request_id is unique so that a
// replayed batch never counts a request twice.
type UsageRecord struct{ ent.Schema }

func (UsageRecord) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

func (UsageRecord) Fields() []ent.Field {
	return []ent.Field{
		field.String("request_id").NotEmpty().MaxLen(128).Unique().Immutable(),
		field.UUID("tenant_id", uuidType).Immutable(),
		field.UUID("api_key_id", uuidType).Optional().Nillable().Immutable(),
		field.String("model").Default("").Immutable(),
		field.String("provider").Default("").Immutable(),
		field.String("upstream_model").Default("").Immutable(),
		field.Int64("input_tokens").Default(0).NonNegative().Immutable(),
		field.Int64("output_tokens").Default(0).NonNegative().Immutable(),
		field.Int64("cached_input_tokens").Default(0).NonNegative().Immutable(),
		field.Int64("reasoning_tokens").Default(0).NonNegative().Immutable(),
		field.Bool("estimated").Default(false).Immutable(),
		field.Int64("cost_micros").Default(0).NonNegative().Immutable(),
		field.Int32("status_code").Default(0).Immutable(),
		field.String("error_type").Default("").Immutable(),
		field.Bool("streamed").Default(false).Immutable(),
		field.Int64("latency_ms").Default(0).NonNegative().Immutable(),
		field.Int64("ttft_ms").Default(0).NonNegative().Immutable(),
		// How many values redaction replaced in the prompt, by kind (only
		// the counts: the values never leave ext_proc).
		field.Int32("redacted_emails").Default(0).NonNegative().Immutable(),
		field.Int32("redacted_phones").Default(0).NonNegative().Immutable(),
		field.Int32("redacted_cards").Default(0).NonNegative().Immutable(),
		field.Int32("redacted_ibans").Default(0).NonNegative().Immutable(),
		field.Int32("redacted_secrets").Default(0).NonNegative().Immutable(),
		// created_at is when the request arrived at the gateway, not when the
		// record reached the store.
		field.Time("created_at").Immutable(),
		// rolled_up says the record is counted in the usage rollups. Ingest
		// stores records counted, in the transaction that counts them;
		// records stored before the rollups existed start false, and the
		// usage.rollup_backfill job counts them.
		field.Bool("rolled_up").Default(false),
		// late says the record reached the store after its month's invoice
		// for its tenant was created, so that invoice does not bill it.
		// Ingest sets it, in the transaction that stores the record, after
		// looking the invoice up (only for records of past months); records
		// stored before this column existed are not late.
		field.Bool("late").Default(false),
		// late_invoice_id is the invoice that billed a late record as
		// prior-period usage, stamped in the transaction that created that
		// invoice (the tenant's next one). Unset while the record waits.
		field.UUID("late_invoice_id", uuidType).Optional().Nillable(),
	}
}

func (UsageRecord) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("tenant_id", "created_at"),
		index.Fields("api_key_id", "created_at"),
		// The operator's reads across tenants (newest first, or a time
		// range summed) would otherwise scan the whole table.
		index.Fields("created_at"),
		// The backfill's queue: only records not yet counted, so the index
		// is empty once an upgrade's backfill is done.
		index.Fields("id").StorageKey("usagerecord_not_rolled_up").Annotations(entsql.IndexWhere("NOT rolled_up")),
		// The invoice job's queue of late records still to bill: empty but
		// for the few replays that arrive after their month's invoice.
		index.Fields("tenant_id", "created_at").StorageKey("usagerecord_late_unbilled").
			Annotations(entsql.IndexWhere("late AND late_invoice_id IS NULL")),
		// Late records by the invoice that billed them, for verification.
		index.Fields("late_invoice_id", "created_at").StorageKey("usagerecord_late_billed").
			Annotations(entsql.IndexWhere("late_invoice_id IS NOT NULL")),
	}
}
