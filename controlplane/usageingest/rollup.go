package usageingest

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	entsql "entgo.io/ent/dialect/sql"

	"github.com/tollgate-dev/tollgate/controlplane/rollup"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/schema"
	"github.com/tollgate-dev/tollgate/ent/usagerollup"
)

// DefaultRollupShards is how many rows one hot rollup combination may be
// spread over (see Server.RollupShards and docs/billing.md).
const DefaultRollupShards = 8

// rollupChunk bounds the rows of one upsert: each binds 8 key columns, an
// id and 9+24 counts, under SQLite's 32,766 parameters per statement.
const rollupChunk = 400

// addRollups adds rows to the hourly and daily rollups, in shard. Each
// row of the statement is a distinct key (a statement may not update one
// row twice), and keys go in a fixed order so that two transactions lock
// shared rows in the same order.
func addRollups(ctx context.Context, tx *ent.Tx, rows []row, shard int32) error {
	recs := make([]rollup.Record, len(rows))
	for i, rw := range rows {
		r := rw.rec
		recs[i] = rollup.Record{
			Time: rw.time, TenantID: rw.tenantID, KeyID: rw.keyID,
			Model: r.GetModel(), Provider: r.GetProvider(), StatusCode: r.GetStatusCode(),
			InputTokens: r.GetInputTokens(), OutputTokens: r.GetOutputTokens(),
			CachedInputTokens: r.GetCachedInputTokens(), ReasoningTokens: r.GetReasoningTokens(),
			CostMicros: r.GetCostMicros(), LatencyMs: r.GetLatencyMs(),
		}
	}
	deltas := rollup.Fold(recs)
	keys := make([]rollup.Key, 0, len(deltas))
	for k := range deltas {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	for start := 0; start < len(keys); start += rollupChunk {
		chunk := keys[start:min(start+rollupChunk, len(keys))]
		builders := make([]*ent.UsageRollupCreate, len(chunk))
		for i, k := range chunk {
			c := deltas[k]
			b := tx.UsageRollup.Create().
				SetPeriod(usagerollup.Period(k.Period)).
				SetBucketStart(k.BucketStart).
				SetTenantID(k.TenantID).
				SetAPIKeyID(k.KeyID).
				SetModel(k.Model).
				SetProvider(k.Provider).
				SetStatusClass(k.StatusClass).
				SetShard(shard).
				SetRequests(c.Requests).
				SetErrors(c.Errors).
				SetInputTokens(c.InputTokens).
				SetOutputTokens(c.OutputTokens).
				SetCachedInputTokens(c.CachedInputTokens).
				SetReasoningTokens(c.ReasoningTokens).
				SetCostMicros(c.CostMicros).
				SetLatencyMsSum(c.LatencyMsSum)
			m := b.Mutation()
			for j, n := range c.Latency {
				if err := m.SetField(schema.LatencyColumn(j), n); err != nil {
					return fmt.Errorf("rollup histogram: %w", err)
				}
			}
			builders[i] = b
		}
		err := tx.UsageRollup.CreateBulk(builders...).
			OnConflict(
				entsql.ConflictColumns(usagerollup.FieldTenantID, usagerollup.FieldPeriod, usagerollup.FieldBucketStart,
					usagerollup.FieldAPIKeyID, usagerollup.FieldModel, usagerollup.FieldProvider,
					usagerollup.FieldStatusClass, usagerollup.FieldShard),
				entsql.ResolveWith(addExcluded),
			).Exec(ctx)
		if err != nil {
			return fmt.Errorf("adding to usage rollups: %w", err)
		}
	}
	return nil
}

// addExcluded makes the upsert add the new row's counts to the stored ones
// (col = col + excluded.col), in one statement on every dialect.
func addExcluded(u *entsql.UpdateSet) {
	excluded := entsql.Dialect(u.Dialect()).Table("excluded")
	for _, col := range rollup.CountColumns() {
		u.Add(col, entsql.Expr(excluded.C(col)))
	}
}

func compareKeys(a, b rollup.Key) int {
	return cmp.Or(
		cmp.Compare(a.TenantID.String(), b.TenantID.String()),
		cmp.Compare(a.Period, b.Period),
		a.BucketStart.Compare(b.BucketStart),
		cmp.Compare(a.KeyID.String(), b.KeyID.String()),
		cmp.Compare(a.Model, b.Model),
		cmp.Compare(a.Provider, b.Provider),
		cmp.Compare(a.StatusClass, b.StatusClass),
	)
}
