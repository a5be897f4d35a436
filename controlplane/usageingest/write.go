package usageingest

import (
	"context"
	"fmt"
	"time"

	entdialect "entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/apikey"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
)

type entTx = ent.Tx

// insertChunk bounds the rows of one INSERT statement. Each row binds 19
// parameters; SQLite allows 32,766 per statement and PostgreSQL 65,535.
const insertChunk = 500

// insertRows writes rows with one multi-row INSERT per chunk. A request id
// that is already stored is skipped (ON CONFLICT DO NOTHING), which is what
// makes a resent batch harmless.
func insertRows(ctx context.Context, tx *ent.Tx, rows []row) error {
	for start := 0; start < len(rows); start += insertChunk {
		chunk := rows[start:min(start+insertChunk, len(rows))]
		builders := make([]*ent.UsageRecordCreate, len(chunk))
		for i, rw := range chunk {
			r := rw.rec
			builders[i] = tx.UsageRecord.Create().
				SetRequestID(rw.requestID).
				SetTenantID(rw.tenantID).
				SetNillableAPIKeyID(rw.keyID).
				SetModel(r.GetModel()).
				SetProvider(r.GetProvider()).
				SetUpstreamModel(r.GetUpstreamModel()).
				SetInputTokens(r.GetInputTokens()).
				SetOutputTokens(r.GetOutputTokens()).
				SetCachedInputTokens(r.GetCachedInputTokens()).
				SetReasoningTokens(r.GetReasoningTokens()).
				SetEstimated(r.GetEstimated()).
				SetCostMicros(r.GetCostMicros()).
				SetStatusCode(r.GetStatusCode()).
				SetErrorType(r.GetErrorType()).
				SetStreamed(r.GetStreamed()).
				SetLatencyMs(r.GetLatencyMs()).
				SetTtftMs(r.GetTtftMs()).
				SetCreatedAt(rw.time)
		}
		err := tx.UsageRecord.CreateBulk(builders...).
			OnConflict(entsql.ConflictColumns(usagerecord.FieldRequestID), entsql.DoNothing()).
			Exec(ctx)
		if err != nil {
			return fmt.Errorf("inserting usage records: %w", err)
		}
	}
	return nil
}

// touchKeys moves each key's last_used_at forward to its latest use, never
// back, and only when it lags by more than lastUsedGranularity. It does not
// go through ent's update builder, which would also set updated_at: a key
// being used is not a change to the key.
func touchKeys(ctx context.Context, tx *ent.Tx, d store.Dialect, keys map[uuid.UUID]time.Time) error {
	dialect := entdialect.Postgres
	if d == store.SQLite {
		dialect = entdialect.SQLite
	}
	for id, t := range keys {
		query, args := entsql.Dialect(dialect).
			Update(apikey.Table).
			Set(apikey.FieldLastUsedAt, t).
			Where(entsql.And(
				entsql.EQ(apikey.FieldID, id),
				entsql.Or(
					entsql.IsNull(apikey.FieldLastUsedAt),
					entsql.LT(apikey.FieldLastUsedAt, t.Add(-lastUsedGranularity)),
				),
			)).Query()
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			return fmt.Errorf("updating last use of key %s: %w", id, err)
		}
	}
	return nil
}

// isPoison reports whether err is the database (or ent) refusing the data
// itself, which no retry can cure, rather than a failure of the moment.
func isPoison(err error) bool {
	return err != nil && (ent.IsConstraintError(err) || ent.IsValidationError(err))
}
