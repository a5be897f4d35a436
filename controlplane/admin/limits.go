package admin

import (
	"context"
	"time"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	quotav1 "github.com/tollgate-dev/tollgate/api/tollgate/quota/v1"
	"github.com/tollgate-dev/tollgate/controlplane/policy"
	"github.com/tollgate-dev/tollgate/controlplane/quotaauthority"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/quotacounter"
)

// limitWindow is one leased meter and the window it is counted in at a
// time (controlplane/quotaauthority: the minute for rates, the UTC day and
// month for budgets, the Unix epoch for a total and for concurrency).
type limitWindow struct {
	name  string
	meter quotav1.Meter
	start func(now time.Time) time.Time
	end   func(start time.Time) time.Time // nil: never resets
}

func minute(t time.Time) time.Time     { return t.Truncate(time.Minute) }
func nextMinute(t time.Time) time.Time { return t.Add(time.Minute) }
func epoch(time.Time) time.Time        { return time.Unix(0, 0).UTC() }

var limitWindows = []limitWindow{
	{"requests_per_minute", quotav1.Meter_METER_REQUESTS_PER_MINUTE, minute, nextMinute},
	{"tokens_per_minute", quotav1.Meter_METER_TOKENS_PER_MINUTE, minute, nextMinute},
	{"concurrent_requests", quotav1.Meter_METER_CONCURRENT_REQUESTS, epoch, nil},
	{"budget_day", quotav1.Meter_METER_DAY_BUDGET,
		func(t time.Time) time.Time { return t.Truncate(24 * time.Hour) },
		func(s time.Time) time.Time { return s.AddDate(0, 0, 1) }},
	{"budget_month", quotav1.Meter_METER_MONTH_BUDGET,
		func(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC) },
		func(s time.Time) time.Time { return s.AddDate(0, 1, 0) }},
	{"budget_total", quotav1.Meter_METER_TOTAL_BUDGET, epoch, nil},
}

func (s *policyService) GetLimitStatus(ctx context.Context, req *adminv1.GetLimitStatusRequest) (*adminv1.GetLimitStatusResponse, error) {
	p := principalFrom(ctx)
	c := s.store.Client()
	t, err := resolvePolicyTarget(ctx, c, p, "target", req.GetTarget())
	if err != nil {
		return nil, s.toStatus(ctx, "get limit status", err)
	}
	var spec policy.Spec
	q := c.GatewayPolicy.Query()
	t.where()(q)
	row, err := q.Only(ctx)
	switch {
	case err == nil:
		spec = row.Spec
	case !ent.IsNotFound(err):
		return nil, s.toStatus(ctx, "get limit status", err)
	}
	kind, id := "tenant", t.tenantID.String()
	if t.keyID != nil {
		kind, id = "key", t.keyID.String()
	}
	now := s.clock()
	resp := &adminv1.GetLimitStatusResponse{Policy: policyToProto(t, spec, row)}
	for _, w := range limitWindows {
		start := w.start(now)
		st := &adminv1.LimitStatus{Name: w.name, WindowStart: ts(start)}
		st.Limit, st.SoftLimit = quotaauthority.Limits(spec, w.meter)
		if w.end != nil {
			st.ResetTime = ts(w.end(start))
		}
		counter, err := c.QuotaCounter.Query().Where(
			quotacounter.SubjectKind(kind), quotacounter.SubjectID(id),
			quotacounter.Meter(w.meter.String()), quotacounter.WindowStart(start),
		).Only(ctx)
		switch {
		case err == nil:
			st.Used, st.Held = counter.Settled, counter.Held
		case !ent.IsNotFound(err):
			return nil, s.toStatus(ctx, "get limit status", err)
		}
		if st.Limit == nil && st.Used == 0 && st.Held == 0 {
			continue // neither limited nor counted: nothing to show
		}
		resp.Limits = append(resp.Limits, st)
	}
	return resp, nil
}
