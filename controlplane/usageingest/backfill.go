package usageingest

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
)

// BackfillBatch is how many records one backfill transaction counts.
const BackfillBatch = 500

// BackfillRollups counts into the rollups the usage records that are not
// counted yet (those stored before the rollups existed: ingest stores every
// record counted), BackfillBatch records per transaction, until none is
// left or ctx ends. It returns how many records it counted. Each record is
// marked in the transaction that counts it, so a run cut short, or two runs
// at once (the store serializes them), never count a record twice.
func (s *Server) BackfillRollups(ctx context.Context) (int, error) {
	total := 0
	for ctx.Err() == nil {
		var n int
		err := s.store.InTx(ctx, func(tx *ent.Tx) error {
			n = 0
			recs, err := tx.UsageRecord.Query().
				Where(usagerecord.RolledUp(false)).
				Order(ent.Asc(usagerecord.FieldID)).
				Limit(BackfillBatch).
				All(ctx)
			if err != nil || len(recs) == 0 {
				return err
			}
			rows := make([]row, len(recs))
			ids := make([]uuid.UUID, len(recs))
			for i, r := range recs {
				rows[i] = backfillRow(r)
				ids[i] = r.ID
			}
			if err := addRollups(ctx, tx, rows, s.shard()); err != nil {
				return err
			}
			marked, err := tx.UsageRecord.Update().
				Where(usagerecord.IDIn(ids...), usagerecord.RolledUp(false)).
				SetRolledUp(true).
				Save(ctx)
			if err != nil {
				return fmt.Errorf("marking records counted: %w", err)
			}
			if marked != len(recs) {
				// Serializable isolation makes this impossible; if it
				// happened, committing would count records twice.
				return fmt.Errorf("usage rollup backfill: marked %d of %d records", marked, len(recs))
			}
			n = len(recs)
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("usage rollup backfill: %w", err)
		}
		if n == 0 {
			return total, nil
		}
		total += n
	}
	return total, ctx.Err()
}

// backfillRow is a stored record as ingest's rollup code reads it.
func backfillRow(r *ent.UsageRecord) row {
	return row{
		requestID: r.RequestID, tenantID: r.TenantID, keyID: r.APIKeyID, time: r.CreatedAt,
		rec: &usagev1.UsageRecord{
			Model: r.Model, Provider: r.Provider, StatusCode: r.StatusCode,
			InputTokens: r.InputTokens, OutputTokens: r.OutputTokens,
			CachedInputTokens: r.CachedInputTokens, ReasoningTokens: r.ReasoningTokens,
			CostMicros: r.CostMicros, LatencyMs: r.LatencyMs,
		},
	}
}
