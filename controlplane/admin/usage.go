package admin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/predicate"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
)

// Summaries are computed from the raw usage_records table with GROUP BY
// (issue 9 replaces this with rollups maintained as records arrive). Every
// query is bounded by a time range on (tenant_id, created_at), or on
// (created_at) for the operator across tenants, so it reads an index range.
const (
	defaultSummaryRange = 30 * 24 * time.Hour
	maxSummaryDays      = 366
)

type usageService struct {
	adminv1.UnimplementedUsageServiceServer
	*Server
}

func usageRecordToProto(u *ent.UsageRecord) *adminv1.UsageRecord {
	out := &adminv1.UsageRecord{
		Id:                u.ID.String(),
		RequestId:         u.RequestID,
		TenantId:          u.TenantID.String(),
		Model:             u.Model,
		Provider:          u.Provider,
		UpstreamModel:     u.UpstreamModel,
		InputTokens:       u.InputTokens,
		OutputTokens:      u.OutputTokens,
		CachedInputTokens: u.CachedInputTokens,
		ReasoningTokens:   u.ReasoningTokens,
		Estimated:         u.Estimated,
		CostMicros:        u.CostMicros,
		StatusCode:        u.StatusCode,
		ErrorType:         u.ErrorType,
		Streamed:          u.Streamed,
		LatencyMs:         u.LatencyMs,
		TtftMs:            u.TtftMs,
		Time:              ts(u.CreatedAt),
	}
	if u.APIKeyID != nil {
		out.KeyId = u.APIKeyID.String()
	}
	return out
}

// usageFilter is the filters both calls share, checked.
type usageFilter struct {
	tenant string // as given: resolved after validation
	keyID  *uuid.UUID
	model  string
	start  *time.Time
	end    *time.Time
}

// parseUsageFilter checks the shared filters and reports every bad one.
func parseUsageFilter(tenant, keyID, model string, start, end *timestamppb.Timestamp) (usageFilter, error) {
	f := usageFilter{tenant: tenant, model: model}
	var errs []error
	if keyID != "" {
		id, err := parseID("key_id", keyID)
		errs = append(errs, err)
		if err == nil {
			f.keyID = &id
		}
	}
	errs = append(errs, checkText("model", model, 200, false))
	for _, x := range []struct {
		field string
		ts    *timestamppb.Timestamp
		dst   **time.Time
	}{{"start_time", start, &f.start}, {"end_time", end, &f.end}} {
		if x.ts == nil {
			continue
		}
		if x.ts.CheckValid() != nil {
			errs = append(errs, invalid.Field(x.field, "is not a valid timestamp"))
			continue
		}
		t := x.ts.AsTime().UTC()
		*x.dst = &t
	}
	if f.start != nil && f.end != nil && !f.end.After(*f.start) {
		errs = append(errs, invalid.Field("end_time", "must be after start_time (%s), got %s", f.start.Format(time.RFC3339), f.end.Format(time.RFC3339)))
	}
	return f, errors.Join(errs...)
}

// predicates scopes a query to what p may see and the filters ask for. A
// tenant admin is always held to its own tenant: naming another tenant is
// NotFound (from resolveTenant), and a key or model of another tenant
// simply matches nothing, as a key without usage would.
func (f usageFilter) predicates(ctx context.Context, c *ent.Client, p Principal) ([]predicate.UsageRecord, error) {
	var out []predicate.UsageRecord
	switch {
	case f.tenant != "":
		t, err := resolveTenant(ctx, c.Tenant, p, "tenant", f.tenant)
		if err != nil {
			return nil, err
		}
		out = append(out, usagerecord.TenantID(t.ID))
	case !p.Operator:
		out = append(out, usagerecord.TenantID(p.TenantID))
	}
	if f.keyID != nil {
		out = append(out, usagerecord.APIKeyID(*f.keyID))
	}
	if f.model != "" {
		out = append(out, usagerecord.Model(f.model))
	}
	if f.start != nil {
		out = append(out, usagerecord.CreatedAtGTE(*f.start))
	}
	if f.end != nil {
		out = append(out, usagerecord.CreatedAtLT(*f.end))
	}
	return out, nil
}

func (s *usageService) ListUsageRecords(ctx context.Context, req *adminv1.ListUsageRecordsRequest) (*adminv1.ListUsageRecordsResponse, error) {
	p := principalFrom(ctx)
	f, err := parseUsageFilter(req.GetTenant(), req.GetKeyId(), req.GetModel(), req.GetStartTime(), req.GetEndTime())
	size, serr := pageSize(req.GetPageSize())
	errs := []error{err, serr}
	var (
		after   time.Time
		afterID uuid.UUID
	)
	if req.GetPageToken() != "" {
		var terr error
		after, afterID, terr = decodeTimeIDToken(req.GetPageToken())
		errs = append(errs, terr)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}
	c := s.store.Client()
	preds, err := f.predicates(ctx, c, p)
	if err != nil {
		return nil, s.toStatus(ctx, "list usage records", err)
	}
	q := c.UsageRecord.Query().Where(preds...).
		Order(ent.Desc(usagerecord.FieldCreatedAt), ent.Desc(usagerecord.FieldID)).
		Limit(size + 1)
	if req.GetPageToken() != "" {
		// Newest first: continue strictly after (time, id) in descending order.
		q.Where(usagerecord.Or(
			usagerecord.CreatedAtLT(after),
			usagerecord.And(usagerecord.CreatedAtEQ(after), usagerecord.IDLT(afterID)),
		))
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, "list usage records", err)
	}
	resp := &adminv1.ListUsageRecordsResponse{}
	resp.Records, resp.NextPageToken = page(rows, size, usageRecordToProto, func(u *ent.UsageRecord) string { return encodeTimeIDToken(u.CreatedAt, u.ID) })
	return resp, nil
}

// usageAgg is one row of a summary query. Only the grouped column among
// model, provider and api_key_id is selected.
type usageAgg struct {
	Model             string        `sql:"model"`
	Provider          string        `sql:"provider"`
	APIKeyID          uuid.NullUUID `sql:"api_key_id"`
	Requests          int64         `sql:"requests"`
	Errors            int64         `sql:"errors"`
	InputTokens       int64         `sql:"input_tokens"`
	OutputTokens      int64         `sql:"output_tokens"`
	CachedInputTokens int64         `sql:"cached_input_tokens"`
	ReasoningTokens   int64         `sql:"reasoning_tokens"`
	CostMicros        int64         `sql:"cost_micros"`
}

func (a usageAgg) totals() *adminv1.UsageTotals {
	return &adminv1.UsageTotals{
		Requests: a.Requests, Errors: a.Errors,
		InputTokens: a.InputTokens, OutputTokens: a.OutputTokens,
		CachedInputTokens: a.CachedInputTokens, ReasoningTokens: a.ReasoningTokens,
		CostMicros: a.CostMicros,
	}
}

// usageAggregates are the summary's columns in portable SQL. SUM of an
// integer is NUMERIC on PostgreSQL and DECIMAL on CockroachDB, and NULL over
// no rows everywhere, hence COALESCE and the CAST back to BIGINT.
func usageAggregates() []ent.AggregateFunc {
	sum := func(col string) ent.AggregateFunc {
		return func(s *entsql.Selector) string {
			return entsql.As(fmt.Sprintf("CAST(COALESCE(SUM(%s), 0) AS BIGINT)", s.C(col)), col)
		}
	}
	return []ent.AggregateFunc{
		func(s *entsql.Selector) string { return entsql.As("COUNT(*)", "requests") },
		func(s *entsql.Selector) string {
			return entsql.As(fmt.Sprintf("CAST(COALESCE(SUM(CASE WHEN %s >= 400 THEN 1 ELSE 0 END), 0) AS BIGINT)", s.C(usagerecord.FieldStatusCode)), "errors")
		},
		sum(usagerecord.FieldInputTokens),
		sum(usagerecord.FieldOutputTokens),
		sum(usagerecord.FieldCachedInputTokens),
		sum(usagerecord.FieldReasoningTokens),
		sum(usagerecord.FieldCostMicros),
	}
}

func (s *usageService) SummarizeUsage(ctx context.Context, req *adminv1.SummarizeUsageRequest) (*adminv1.SummarizeUsageResponse, error) {
	p := principalFrom(ctx)
	f, err := parseUsageFilter(req.GetTenant(), req.GetKeyId(), req.GetModel(), req.GetStartTime(), req.GetEndTime())
	errs := []error{err}
	column := ""
	switch req.GetGroupBy() {
	case adminv1.UsageGroupBy_USAGE_GROUP_BY_DAY:
	case adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL:
		column = usagerecord.FieldModel
	case adminv1.UsageGroupBy_USAGE_GROUP_BY_KEY:
		column = usagerecord.FieldAPIKeyID
	case adminv1.UsageGroupBy_USAGE_GROUP_BY_PROVIDER:
		column = usagerecord.FieldProvider
	default:
		errs = append(errs, invalid.Field("group_by", "is required: day, model, key or provider"))
	}
	if err == nil {
		if f.end == nil {
			f.end = ptr(s.clock())
		}
		if f.start == nil {
			f.start = ptr(f.end.Add(-defaultSummaryRange))
		}
		if !f.end.After(*f.start) {
			errs = append(errs, invalid.Field("end_time", "must be after start_time (%s)", f.start.Format(time.RFC3339)))
		} else if days := f.end.Sub(*f.start).Hours() / 24; days > maxSummaryDays {
			errs = append(errs, invalid.Field("start_time", "the range may span at most %d days, got %.1f; summarize it in parts", maxSummaryDays, days))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}
	c := s.store.Client()
	preds, err := f.predicates(ctx, c, p)
	if err != nil {
		return nil, s.toStatus(ctx, "summarize usage", err)
	}
	var groups []*adminv1.UsageGroup
	if column == "" {
		groups, err = summarizeByDay(ctx, c, preds, *f.start, *f.end)
	} else {
		groups, err = summarizeByColumn(ctx, c, preds, column)
	}
	if err != nil {
		return nil, s.toStatus(ctx, "summarize usage", err)
	}
	resp := &adminv1.SummarizeUsageResponse{
		Groups: groups, Totals: &adminv1.UsageTotals{},
		StartTime: timestamppb.New(*f.start), EndTime: timestamppb.New(*f.end),
	}
	for _, g := range groups {
		addTotals(resp.Totals, g.GetTotals())
	}
	return resp, nil
}

func summarizeByColumn(ctx context.Context, c *ent.Client, preds []predicate.UsageRecord, column string) ([]*adminv1.UsageGroup, error) {
	var rows []usageAgg
	if err := c.UsageRecord.Query().Where(preds...).GroupBy(column).Aggregate(usageAggregates()...).Scan(ctx, &rows); err != nil {
		return nil, fmt.Errorf("summarizing by %s: %w", column, err)
	}
	groups := make([]*adminv1.UsageGroup, 0, len(rows))
	for _, r := range rows {
		key := r.Model
		switch column {
		case usagerecord.FieldProvider:
			key = r.Provider
		case usagerecord.FieldAPIKeyID:
			key = ""
			if r.APIKeyID.Valid {
				key = r.APIKeyID.UUID.String()
			}
		}
		groups = append(groups, &adminv1.UsageGroup{Key: key, Totals: r.totals()})
	}
	slices.SortFunc(groups, func(a, b *adminv1.UsageGroup) int {
		return cmp.Or(
			cmp.Compare(b.GetTotals().GetCostMicros(), a.GetTotals().GetCostMicros()),
			cmp.Compare(b.GetTotals().GetRequests(), a.GetTotals().GetRequests()),
			cmp.Compare(a.GetKey(), b.GetKey()),
		)
	})
	return groups, nil
}

// summarizeByDay runs one aggregate per UTC day of [start, end). No SQL
// expression truncates a timestamp to its day on SQLite, PostgreSQL and
// CockroachDB alike (date_trunc is not SQLite's, strftime not PostgreSQL's),
// and SQLite stores times as text; days computed in Go keep one query for
// every dialect, each an index range scan. At most 367 queries, since the
// range is capped; rollups (issue 9) will answer this from one table.
func summarizeByDay(ctx context.Context, c *ent.Client, preds []predicate.UsageRecord, start, end time.Time) ([]*adminv1.UsageGroup, error) {
	var groups []*adminv1.UsageGroup
	for day := start.Truncate(24 * time.Hour); day.Before(end); day = day.Add(24 * time.Hour) {
		from, to := maxTime(day, start), minTime(day.Add(24*time.Hour), end)
		var rows []usageAgg
		q := c.UsageRecord.Query().Where(preds...).Where(usagerecord.CreatedAtGTE(from), usagerecord.CreatedAtLT(to))
		if err := q.Aggregate(usageAggregates()...).Scan(ctx, &rows); err != nil {
			return nil, fmt.Errorf("summarizing %s: %w", day.Format(time.DateOnly), err)
		}
		if len(rows) == 1 && rows[0].Requests > 0 {
			groups = append(groups, &adminv1.UsageGroup{Key: day.Format(time.DateOnly), Totals: rows[0].totals()})
		}
	}
	return groups, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func addTotals(dst, src *adminv1.UsageTotals) {
	dst.Requests += src.GetRequests()
	dst.Errors += src.GetErrors()
	dst.InputTokens += src.GetInputTokens()
	dst.OutputTokens += src.GetOutputTokens()
	dst.CachedInputTokens += src.GetCachedInputTokens()
	dst.ReasoningTokens += src.GetReasoningTokens()
	dst.CostMicros += src.GetCostMicros()
}
