package admin

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/controlplane/rollup"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/predicate"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
)

// Summaries and time series read the usage rollups (controlplane/rollup),
// which ingestion maintains in the transaction that stores the records:
// never the raw records. Their ranges are whole hours.
const (
	defaultSummaryRange = 30 * 24 * time.Hour
	maxSummaryDays      = 366
	maxHourlyDays       = 31
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
	if u.RedactedEmails+u.RedactedPhones+u.RedactedCards+u.RedactedIbans+u.RedactedSecrets > 0 {
		out.Redactions = &adminv1.Redactions{
			Emails: u.RedactedEmails, Phones: u.RedactedPhones, Cards: u.RedactedCards,
			Ibans: u.RedactedIbans, Secrets: u.RedactedSecrets,
		}
	}
	return out
}

// usageFilter is the filters the calls share, checked.
type usageFilter struct {
	tenant   string // as given: resolved after validation
	keyID    *uuid.UUID
	model    string
	provider string // rollup reads only
	start    *time.Time
	end      *time.Time
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

// rollupFilter scopes a rollup read as predicates scopes a record query.
func (f usageFilter) rollupFilter(ctx context.Context, c *ent.Client, p Principal) (rollup.Filter, error) {
	out := rollup.Filter{KeyID: f.keyID, Model: f.model, Provider: f.provider}
	switch {
	case f.tenant != "":
		t, err := resolveTenant(ctx, c.Tenant, p, "tenant", f.tenant)
		if err != nil {
			return rollup.Filter{}, err
		}
		out.TenantID = &t.ID
	case !p.Operator:
		out.TenantID = &p.TenantID
	}
	return out, nil
}

// rollupRange fills in the default range, rounds it out to whole hours and
// checks its length.
func (s *usageService) rollupRange(f usageFilter, maxDays int) (rollup.Range, error) {
	end := s.clock()
	if f.end != nil {
		end = *f.end
	}
	var r rollup.Range
	r.End = rollup.Hour.Start(end)
	if r.End.Before(end) {
		r.End = r.End.Add(time.Hour)
	}
	start := r.End.Add(-defaultSummaryRange)
	if f.start != nil {
		start = *f.start
	}
	r.Start = rollup.Hour.Start(start)
	if !end.After(start) {
		return r, invalid.Field("end_time", "must be after start_time (%s)", start.Format(time.RFC3339))
	}
	if days := r.End.Sub(r.Start).Hours() / 24; days > float64(maxDays) {
		return r, invalid.Field("start_time", "the range may span at most %d days here, got %.1f; read it in parts", maxDays, days)
	}
	return r, nil
}

// groupDim maps a grouping to the rollup column it reads.
var groupDim = map[adminv1.UsageGroupBy]rollup.Dim{
	adminv1.UsageGroupBy_USAGE_GROUP_BY_HOUR:     rollup.ByBucket,
	adminv1.UsageGroupBy_USAGE_GROUP_BY_DAY:      rollup.ByBucket,
	adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL:    rollup.ByModel,
	adminv1.UsageGroupBy_USAGE_GROUP_BY_KEY:      rollup.ByKey,
	adminv1.UsageGroupBy_USAGE_GROUP_BY_PROVIDER: rollup.ByProvider,
	adminv1.UsageGroupBy_USAGE_GROUP_BY_TENANT:   rollup.ByTenant,
}

// groupKey names a row's group as UsageGroup.key does.
func groupKey(r rollup.Row, dim rollup.Dim, days bool) string {
	switch dim {
	case rollup.ByBucket:
		if days {
			return r.Bucket.Format(time.DateOnly)
		}
		return r.Bucket.Format(time.RFC3339)
	case rollup.ByModel:
		return r.Model
	case rollup.ByProvider:
		return r.Provider
	case rollup.ByTenant:
		return r.TenantID.String()
	case rollup.ByKey:
		if r.KeyID == uuid.Nil {
			return ""
		}
		return r.KeyID.String()
	}
	return ""
}

// usageTotals converts rollup counts, percentiles and rates included.
func usageTotals(c rollup.Counts) *adminv1.UsageTotals {
	out := &adminv1.UsageTotals{
		Requests: c.Requests, Errors: c.Errors,
		InputTokens: c.InputTokens, OutputTokens: c.OutputTokens,
		CachedInputTokens: c.CachedInputTokens, ReasoningTokens: c.ReasoningTokens,
		CostMicros: c.CostMicros,
	}
	if c.Requests > 0 {
		out.ErrorRate = float64(c.Errors) / float64(c.Requests)
		out.LatencyMeanMs = (c.LatencyMsSum + c.Requests/2) / c.Requests
		out.LatencyP50Ms = rollup.Percentile(c.Latency, 0.50)
		out.LatencyP95Ms = rollup.Percentile(c.Latency, 0.95)
	}
	return out
}

func (s *usageService) SummarizeUsage(ctx context.Context, req *adminv1.SummarizeUsageRequest) (*adminv1.SummarizeUsageResponse, error) {
	p := principalFrom(ctx)
	f, err := parseUsageFilter(req.GetTenant(), req.GetKeyId(), req.GetModel(), req.GetStartTime(), req.GetEndTime())
	f.provider = req.GetProvider()
	errs := []error{err, checkText("provider", f.provider, 255, false)}
	dim, ok := groupDim[req.GetGroupBy()]
	if !ok {
		errs = append(errs, invalid.Field("group_by", "is required: hour, day, model, key, provider or tenant"))
	}
	hourly := req.GetGroupBy() == adminv1.UsageGroupBy_USAGE_GROUP_BY_HOUR
	maxDays := maxSummaryDays
	if hourly {
		maxDays = maxHourlyDays
	}
	var r rollup.Range
	if err == nil {
		var rerr error
		r, rerr = s.rollupRange(f, maxDays)
		errs = append(errs, rerr)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}
	rf, err := f.rollupFilter(ctx, s.store.Client(), p)
	if err != nil {
		return nil, s.toStatus(ctx, "summarize usage", err)
	}
	rows, err := rollup.SumRange(ctx, s.store, rf, r, !hourly, dim)
	if err != nil {
		return nil, s.toStatus(ctx, "summarize usage", err)
	}
	resp := &adminv1.SummarizeUsageResponse{StartTime: timestamppb.New(r.Start), EndTime: timestamppb.New(r.End)}
	var total rollup.Counts
	for _, row := range rows {
		resp.Groups = append(resp.Groups, &adminv1.UsageGroup{Key: groupKey(row, dim, !hourly), Totals: usageTotals(row.Counts)})
		total.Add(row.Counts)
	}
	resp.Totals = usageTotals(total)
	if dim == rollup.ByBucket {
		// Keys of hours and days sort as their times do.
		slices.SortFunc(resp.Groups, func(a, b *adminv1.UsageGroup) int { return cmp.Compare(a.GetKey(), b.GetKey()) })
	} else {
		slices.SortFunc(resp.Groups, byCost)
	}
	return resp, nil
}

// byCost orders groups costliest first, then by requests, then by key.
func byCost(a, b *adminv1.UsageGroup) int {
	return cmp.Or(
		cmp.Compare(b.GetTotals().GetCostMicros(), a.GetTotals().GetCostMicros()),
		cmp.Compare(b.GetTotals().GetRequests(), a.GetTotals().GetRequests()),
		cmp.Compare(a.GetKey(), b.GetKey()),
	)
}

func (s *usageService) GetUsageTimeSeries(ctx context.Context, req *adminv1.GetUsageTimeSeriesRequest) (*adminv1.GetUsageTimeSeriesResponse, error) {
	p := principalFrom(ctx)
	f, err := parseUsageFilter(req.GetTenant(), req.GetKeyId(), req.GetModel(), req.GetStartTime(), req.GetEndTime())
	f.provider = req.GetProvider()
	errs := []error{err, checkText("provider", f.provider, 255, false)}
	maxDays := maxSummaryDays
	switch req.GetGranularity() {
	case adminv1.UsageGranularity_USAGE_GRANULARITY_DAY:
	case adminv1.UsageGranularity_USAGE_GRANULARITY_HOUR:
		maxDays = maxHourlyDays
	default:
		errs = append(errs, invalid.Field("granularity", "is required: hour or day"))
	}
	days := req.GetGranularity() == adminv1.UsageGranularity_USAGE_GRANULARITY_DAY
	dims := []rollup.Dim{rollup.ByBucket}
	var split rollup.Dim
	if by := req.GetSplitBy(); by != adminv1.UsageGroupBy_USAGE_GROUP_BY_UNSPECIFIED {
		d, ok := groupDim[by]
		if !ok || d == rollup.ByBucket {
			errs = append(errs, invalid.Field("split_by", "must be model, key, provider or tenant (or unset for one series)"))
		} else {
			split = d
			dims = append(dims, d)
		}
	}
	var r rollup.Range
	if err == nil {
		var rerr error
		r, rerr = s.rollupRange(f, maxDays)
		errs = append(errs, rerr)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}
	rf, err := f.rollupFilter(ctx, s.store.Client(), p)
	if err != nil {
		return nil, s.toStatus(ctx, "read usage time series", err)
	}
	rows, err := rollup.SumRange(ctx, s.store, rf, r, days, dims...)
	if err != nil {
		return nil, s.toStatus(ctx, "read usage time series", err)
	}
	type series struct {
		out   *adminv1.UsageSeries
		total rollup.Counts
	}
	bySeries := map[string]*series{}
	for _, row := range rows {
		key := ""
		if split != "" {
			key = groupKey(row, split, days)
		}
		se := bySeries[key]
		if se == nil {
			se = &series{out: &adminv1.UsageSeries{Key: key}}
			bySeries[key] = se
		}
		se.out.Points = append(se.out.Points, &adminv1.UsagePoint{StartTime: timestamppb.New(row.Bucket), Totals: usageTotals(row.Counts)})
		se.total.Add(row.Counts)
	}
	resp := &adminv1.GetUsageTimeSeriesResponse{StartTime: timestamppb.New(r.Start), EndTime: timestamppb.New(r.End), Granularity: req.GetGranularity()}
	for _, se := range bySeries {
		slices.SortFunc(se.out.Points, func(a, b *adminv1.UsagePoint) int {
			return a.GetStartTime().AsTime().Compare(b.GetStartTime().AsTime())
		})
		se.out.Totals = usageTotals(se.total)
		resp.Series = append(resp.Series, se.out)
	}
	slices.SortFunc(resp.Series, func(a, b *adminv1.UsageSeries) int {
		return byCost(&adminv1.UsageGroup{Key: a.GetKey(), Totals: a.GetTotals()}, &adminv1.UsageGroup{Key: b.GetKey(), Totals: b.GetTotals()})
	})
	return resp, nil
}
