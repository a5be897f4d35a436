package rollup

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	entdialect "entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/ent/schema"
	"github.com/tollgate-dev/tollgate/ent/usagerollup"
)

// Filter selects rollup rows of one period whose bucket starts in
// [Start, End).
type Filter struct {
	Period     Period
	Start, End time.Time
	TenantID   *uuid.UUID // nil: every tenant
	KeyID      *uuid.UUID // nil: every key; uuid.Nil: requests without a key
	Model      string     // "": every model
	Provider   string     // "": every provider
}

// Dim is a column rows can be grouped by.
type Dim string

const (
	ByBucket   Dim = usagerollup.FieldBucketStart
	ByTenant   Dim = usagerollup.FieldTenantID
	ByKey      Dim = usagerollup.FieldAPIKeyID
	ByModel    Dim = usagerollup.FieldModel
	ByProvider Dim = usagerollup.FieldProvider
	ByStatus   Dim = usagerollup.FieldStatusClass
)

// Row is one group's totals. Only the grouped fields are set.
type Row struct {
	Bucket      time.Time
	TenantID    uuid.UUID
	KeyID       uuid.UUID
	Model       string
	Provider    string
	StatusClass int32
	Counts
}

// countColumns are the columns a Row adds up, in Counts' order, histogram
// last.
var countColumns = func() []string {
	cols := []string{
		usagerollup.FieldRequests, usagerollup.FieldErrors, usagerollup.FieldInputTokens,
		usagerollup.FieldOutputTokens, usagerollup.FieldCachedInputTokens, usagerollup.FieldReasoningTokens,
		usagerollup.FieldCostMicros, usagerollup.FieldLatencyMsSum,
	}
	for i := range Buckets {
		cols = append(cols, schema.LatencyColumn(i))
	}
	return cols
}()

// CountColumns returns the columns an ingest upsert adds to.
func CountColumns() []string { return countColumns }

// Sum adds up the rows f selects, grouped by dims, in one aggregate query
// over an index range: (tenant_id, period, bucket_start) for a tenant,
// (period, bucket_start) across tenants. A daily read that neither filters
// nor groups by key reads the every-key rows (AllKeys); every other read
// leaves them out. Rows come in no particular order.
func Sum(ctx context.Context, st *store.Store, f Filter, dims ...Dim) ([]Row, error) {
	d := entdialect.Postgres
	if st.Dialect() == store.SQLite {
		d = entdialect.SQLite
	}
	b := entsql.Dialect(d)
	t := b.Table(usagerollup.Table)
	sel := make([]string, 0, len(dims)+len(countColumns))
	group := make([]string, 0, len(dims))
	for _, dim := range dims {
		sel = append(sel, t.C(string(dim)))
		group = append(group, t.C(string(dim)))
	}
	for _, col := range countColumns {
		// SUM of integers is NUMERIC on PostgreSQL and DECIMAL on
		// CockroachDB, and NULL over no rows: cast back, default 0.
		sel = append(sel, fmt.Sprintf("CAST(COALESCE(SUM(%s), 0) AS BIGINT)", t.C(col)))
	}
	preds := []*entsql.Predicate{
		entsql.EQ(t.C(usagerollup.FieldPeriod), string(f.Period)),
		entsql.GTE(t.C(usagerollup.FieldBucketStart), f.Start),
		entsql.LT(t.C(usagerollup.FieldBucketStart), f.End),
	}
	if f.TenantID != nil {
		preds = append(preds, entsql.EQ(t.C(usagerollup.FieldTenantID), *f.TenantID))
	}
	if everyKey(f, dims) {
		preds = append(preds, entsql.EQ(t.C(usagerollup.FieldAPIKeyID), AllKeys))
	} else {
		preds = append(preds, entsql.NEQ(t.C(usagerollup.FieldAPIKeyID), AllKeys))
		if f.KeyID != nil {
			preds = append(preds, entsql.EQ(t.C(usagerollup.FieldAPIKeyID), *f.KeyID))
		}
	}
	if f.Model != "" {
		preds = append(preds, entsql.EQ(t.C(usagerollup.FieldModel), f.Model))
	}
	if f.Provider != "" {
		preds = append(preds, entsql.EQ(t.C(usagerollup.FieldProvider), f.Provider))
	}
	q := b.Select(sel...).From(t).Where(entsql.And(preds...))
	if len(group) > 0 {
		q.GroupBy(group...)
	}
	query, args := q.Query()
	rs, err := st.DB().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("summing usage rollups: %w", err)
	}
	defer rs.Close() //nolint:errcheck // rs.Err reports what matters
	var out []Row
	for rs.Next() {
		r, err := scanRow(rs, dims)
		if err != nil {
			return nil, err
		}
		if r.Requests > 0 {
			out = append(out, r)
		}
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("summing usage rollups: %w", err)
	}
	return out, nil
}

// everyKey reports whether a read can use the daily rows of every key
// together: it neither filters nor groups by key.
func everyKey(f Filter, dims []Dim) bool {
	return f.Period == Day && f.KeyID == nil && !slices.Contains(dims, ByKey)
}

func scanRow(rs *sql.Rows, dims []Dim) (Row, error) {
	r := Row{Counts: Counts{Latency: make([]int64, Buckets)}}
	dest := make([]any, 0, len(dims)+len(countColumns))
	for _, dim := range dims {
		switch dim {
		case ByBucket:
			dest = append(dest, &r.Bucket)
		case ByTenant:
			dest = append(dest, &r.TenantID)
		case ByKey:
			dest = append(dest, &r.KeyID)
		case ByModel:
			dest = append(dest, &r.Model)
		case ByProvider:
			dest = append(dest, &r.Provider)
		case ByStatus:
			dest = append(dest, &r.StatusClass)
		}
	}
	dest = append(dest, &r.Requests, &r.Errors, &r.InputTokens, &r.OutputTokens, &r.CachedInputTokens,
		&r.ReasoningTokens, &r.CostMicros, &r.LatencyMsSum)
	for i := range r.Latency {
		dest = append(dest, &r.Latency[i])
	}
	if err := rs.Scan(dest...); err != nil {
		return Row{}, fmt.Errorf("reading usage rollups: %w", err)
	}
	r.Bucket = r.Bucket.UTC()
	return r, nil
}

// Range is a time range for SumRange: [Start, End), both whole UTC hours.
type Range struct{ Start, End time.Time }

// SumRange adds up the usage in r (Filter's Period, Start and End are
// ignored), grouped by dims. With ByBucket, Bucket is the hour when days is
// false and the UTC day when it is true. It reads daily rows for the whole
// days in r and hourly rows only for the partial days at its ends, so a
// 30-day range reads about 30 rows per combination rather than 720.
func SumRange(ctx context.Context, st *store.Store, f Filter, r Range, days bool, dims ...Dim) ([]Row, error) {
	type part struct {
		period     Period
		start, end time.Time
	}
	firstDay := Day.Start(r.Start)
	if firstDay.Before(r.Start) {
		firstDay = firstDay.AddDate(0, 0, 1)
	}
	lastDay := Day.Start(r.End)
	var parts []part
	if !firstDay.Before(lastDay) {
		parts = []part{{Hour, r.Start, r.End}}
	} else {
		parts = []part{{Hour, r.Start, firstDay}, {Day, firstDay, lastDay}, {Hour, lastDay, r.End}}
	}
	if !days && slices.Contains(dims, ByBucket) {
		// Hourly points need hourly rows throughout.
		parts = []part{{Hour, r.Start, r.End}}
	}
	type groupKey struct {
		bucket   time.Time
		tenant   uuid.UUID
		key      uuid.UUID
		model    string
		provider string
		status   int32
	}
	merged := map[groupKey]*Row{}
	var order []groupKey
	for _, p := range parts {
		if !p.start.Before(p.end) {
			continue
		}
		pf := f
		pf.Period, pf.Start, pf.End = p.period, p.start, p.end
		rows, err := Sum(ctx, st, pf, dims...)
		if err != nil {
			return nil, err
		}
		for _, row := range rows {
			if days {
				row.Bucket = Day.Start(row.Bucket)
			}
			k := groupKey{row.Bucket, row.TenantID, row.KeyID, row.Model, row.Provider, row.StatusClass}
			if m := merged[k]; m != nil {
				m.Add(row.Counts)
				continue
			}
			merged[k] = &row
			order = append(order, k)
		}
	}
	out := make([]Row, len(order))
	for i, k := range order {
		out[i] = *merged[k]
	}
	return out, nil
}
