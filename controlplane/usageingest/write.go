package usageingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	entdialect "entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"entgo.io/ent/dialect/sql/sqlgraph"
	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/apikey"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
)

type entTx = ent.Tx

// insertChunk bounds the rows of one INSERT statement. Each row binds 25
// parameters (recordColumns); SQLite allows 32,766 per statement and
// PostgreSQL 65,535.
const insertChunk = 500

// insertRows writes rows with one multi-row INSERT per chunk and returns
// the rows it inserted. A request id that is already stored is skipped (ON
// CONFLICT DO NOTHING), which is what makes a resent batch harmless;
// RETURNING names the rows that were new, and only those may be added to
// the rollups. (ent's bulk create cannot say which rows an upsert skipped:
// it reads RETURNING back by position.) Asking the table first which ids
// it holds would work too, but under SERIALIZABLE that read conflicts with
// every concurrent insert near the same index pages.
func insertRows(ctx context.Context, tx *ent.Tx, d store.Dialect, rows []row) ([]row, error) {
	dialect := entdialect.Postgres
	if d == store.SQLite {
		dialect = entdialect.SQLite
	}
	byID := make(map[string]row, len(rows))
	inserted := make([]row, 0, len(rows))
	for start := 0; start < len(rows); start += insertChunk {
		chunk := rows[start:min(start+insertChunk, len(rows))]
		ins := entsql.Dialect(dialect).Insert(usagerecord.Table).Columns(recordColumns...)
		for _, rw := range chunk {
			if err := checkRecord(rw); err != nil {
				return nil, err
			}
			ins.Values(recordValues(rw)...)
			byID[rw.requestID] = rw
		}
		query, args := ins.
			OnConflict(entsql.ConflictColumns(usagerecord.FieldRequestID), entsql.DoNothing()).
			Returning(usagerecord.FieldRequestID).
			Query()
		ids, err := queryStrings(ctx, tx, query, args)
		if err != nil {
			return nil, fmt.Errorf("inserting usage records: %w", err)
		}
		for _, id := range ids {
			inserted = append(inserted, byID[id])
		}
	}
	return inserted, nil
}

// recordColumns and recordValues are one usage_records row.
var recordColumns = []string{
	usagerecord.FieldID, usagerecord.FieldRequestID, usagerecord.FieldTenantID, usagerecord.FieldAPIKeyID,
	usagerecord.FieldModel, usagerecord.FieldProvider, usagerecord.FieldUpstreamModel,
	usagerecord.FieldInputTokens, usagerecord.FieldOutputTokens, usagerecord.FieldCachedInputTokens,
	usagerecord.FieldReasoningTokens, usagerecord.FieldEstimated, usagerecord.FieldCostMicros,
	usagerecord.FieldStatusCode, usagerecord.FieldErrorType, usagerecord.FieldStreamed,
	usagerecord.FieldLatencyMs, usagerecord.FieldTtftMs, usagerecord.FieldCreatedAt,
	usagerecord.FieldRedactedEmails, usagerecord.FieldRedactedPhones, usagerecord.FieldRedactedCards,
	usagerecord.FieldRedactedIbans, usagerecord.FieldRedactedSecrets, usagerecord.FieldRolledUp,
}

func recordValues(rw row) []any {
	r := rw.rec
	red := r.GetRedactions()
	var key any // NULL without a key
	if rw.keyID != nil {
		key = *rw.keyID
	}
	return []any{
		uuid.New(), rw.requestID, rw.tenantID, key,
		r.GetModel(), r.GetProvider(), r.GetUpstreamModel(),
		r.GetInputTokens(), r.GetOutputTokens(), r.GetCachedInputTokens(),
		r.GetReasoningTokens(), r.GetEstimated(), r.GetCostMicros(),
		r.GetStatusCode(), r.GetErrorType(), r.GetStreamed(),
		r.GetLatencyMs(), r.GetTtftMs(), rw.time,
		red.GetEmails(), red.GetPhones(), red.GetCards(), red.GetIbans(), red.GetSecrets(),
		true, // counted in the rollups by the same transaction (storeRows)
	}
}

// errRefused marks a row the schema's own checks refuse (what ent's
// builder would have refused): no retry can store it.
var errRefused = errors.New("refused by the usage record schema")

// checkRecord runs the schema's field validators, which a raw INSERT
// would skip.
func checkRecord(rw row) error {
	r := rw.rec
	for _, c := range []struct {
		field string
		err   error
	}{
		{usagerecord.FieldRequestID, usagerecord.RequestIDValidator(rw.requestID)},
		{usagerecord.FieldInputTokens, usagerecord.InputTokensValidator(r.GetInputTokens())},
		{usagerecord.FieldOutputTokens, usagerecord.OutputTokensValidator(r.GetOutputTokens())},
		{usagerecord.FieldCachedInputTokens, usagerecord.CachedInputTokensValidator(r.GetCachedInputTokens())},
		{usagerecord.FieldReasoningTokens, usagerecord.ReasoningTokensValidator(r.GetReasoningTokens())},
		{usagerecord.FieldCostMicros, usagerecord.CostMicrosValidator(r.GetCostMicros())},
		{usagerecord.FieldLatencyMs, usagerecord.LatencyMsValidator(r.GetLatencyMs())},
		{usagerecord.FieldTtftMs, usagerecord.TtftMsValidator(r.GetTtftMs())},
		{usagerecord.FieldRedactedEmails, usagerecord.RedactedEmailsValidator(r.GetRedactions().GetEmails())},
		{usagerecord.FieldRedactedPhones, usagerecord.RedactedPhonesValidator(r.GetRedactions().GetPhones())},
		{usagerecord.FieldRedactedCards, usagerecord.RedactedCardsValidator(r.GetRedactions().GetCards())},
		{usagerecord.FieldRedactedIbans, usagerecord.RedactedIbansValidator(r.GetRedactions().GetIbans())},
		{usagerecord.FieldRedactedSecrets, usagerecord.RedactedSecretsValidator(r.GetRedactions().GetSecrets())},
	} {
		if c.err != nil {
			return fmt.Errorf("%w: %s: %w", errRefused, c.field, c.err)
		}
	}
	return nil
}

func queryStrings(ctx context.Context, tx *ent.Tx, query string, args []any) (out []string, err error) {
	rs, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := rs.Close(); err == nil {
			err = cerr
		}
	}()
	for rs.Next() {
		var s string
		if err := rs.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rs.Err()
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
	return err != nil && (errors.Is(err, errRefused) || sqlgraph.IsConstraintError(err) ||
		ent.IsConstraintError(err) || ent.IsValidationError(err))
}
