package schema

import (
	"fmt"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// LatencyBoundsMs are the upper bounds (inclusive, in milliseconds) of the
// rollups' latency histogram; a last bucket counts everything slower. Each
// bound is at most twice the one before, so a percentile read from the
// buckets is off by less than one bucket's width. controlplane/rollup reads
// the same bounds; changing them needs a migration that adds columns (old
// columns keep their meaning).
var LatencyBoundsMs = []int64{5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000, 60000}

// LatencyColumn names the histogram column of bucket i (0 ≤ i ≤
// len(LatencyBoundsMs)).
func LatencyColumn(i int) string {
	if i == len(LatencyBoundsMs) {
		return fmt.Sprintf("latency_gt_%d", LatencyBoundsMs[i-1])
	}
	return fmt.Sprintf("latency_le_%d", LatencyBoundsMs[i])
}

// UsageRollup adds up the usage records of one hour (or one UTC day) that
// share tenant, key, model, provider and status class. Rows are written in
// the transaction that inserts the records (controlplane/usageingest), by
// upserts that add to the counts, so analytics never scan raw records.
//
// shard spreads one hot combination over several rows: ingest transactions
// on many replicas that add to the same row would conflict under
// SERIALIZABLE and retry; readers sum the shards anyway (docs/billing.md).
type UsageRollup struct{ ent.Schema }

func (UsageRollup) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

func (UsageRollup) Fields() []ent.Field {
	fields := []ent.Field{
		// "hour" or "day": the length of the bucket.
		field.Enum("period").Values("hour", "day").Immutable(),
		// The bucket's start in UTC.
		field.Time("bucket_start").Immutable(),
		field.UUID("tenant_id", uuidType).Immutable(),
		// uuid.Nil for requests without a key: NULLs are distinct in a
		// unique index, and the upsert needs the row to conflict.
		field.UUID("api_key_id", uuidType).Immutable(),
		field.String("model").Default("").Immutable(),
		field.String("provider").Default("").Immutable(),
		// The HTTP status divided by 100 (2 for 2xx, …); 0 when no status
		// was sent.
		field.Int32("status_class").Immutable(),
		field.Int32("shard").Immutable(),
		field.Int64("requests").Default(0),
		// Requests answered with a status of 400 or more.
		field.Int64("errors").Default(0),
		field.Int64("input_tokens").Default(0),
		field.Int64("output_tokens").Default(0),
		field.Int64("cached_input_tokens").Default(0),
		field.Int64("reasoning_tokens").Default(0),
		field.Int64("cost_micros").Default(0),
		field.Int64("latency_ms_sum").Default(0),
	}
	for i := 0; i <= len(LatencyBoundsMs); i++ {
		fields = append(fields, field.Int64(LatencyColumn(i)).Default(0))
	}
	return fields
}

func (UsageRollup) Indexes() []ent.Index {
	return []ent.Index{
		// The upsert's conflict target, and a tenant's reads: a range of
		// buckets of one period.
		index.Fields("tenant_id", "period", "bucket_start", "api_key_id", "model", "provider", "status_class", "shard").Unique(),
		// The operator's reads across tenants; api_key_id lets a read of the
		// every-key rows skip the per-key rows inside the index.
		index.Fields("period", "bucket_start", "api_key_id"),
	}
}
