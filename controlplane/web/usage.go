package web

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

// The usage pages read the admin API's rollup-backed analytics
// (SummarizeUsage, GetUsageTimeSeries), never raw usage records, so they
// cost the same for a tenant with a million records as for one with ten.

// chart is what static/app.js draws with uPlot: one x axis (Unix seconds)
// and one or more series of values.
type chart struct {
	Title  string        `json:"title"`
	Unit   string        `json:"unit"` // usd, count, ms, pct
	X      []int64       `json:"x"`
	Series []chartSeries `json:"series"`
}

type chartSeries struct {
	Label  string    `json:"label"`
	Values []float64 `json:"values"`
}

// JSON is the chart for a data- attribute (html/template escapes it).
func (c chart) JSON() string {
	b, err := json.Marshal(c)
	if err != nil {
		return "{}"
	}
	return string(b)
}

// metric reads one number from a bucket's totals.
type metric struct {
	Name  string
	Title string
	Unit  string
	Value func(*adminv1.UsageTotals) float64
}

var metrics = []metric{
	{"cost", "Spend", "usd", func(t *adminv1.UsageTotals) float64 { return float64(t.GetCostMicros()) / 1e6 }},
	{"requests", "Requests", "count", func(t *adminv1.UsageTotals) float64 { return float64(t.GetRequests()) }},
	{"tokens", "Tokens (input + output)", "count", func(t *adminv1.UsageTotals) float64 {
		return float64(t.GetInputTokens() + t.GetOutputTokens())
	}},
	{"errors", "Error rate", "pct", func(t *adminv1.UsageTotals) float64 { return 100 * t.GetErrorRate() }},
	{"latency", "Latency p95", "ms", func(t *adminv1.UsageTotals) float64 { return float64(t.GetLatencyP95Ms()) }},
}

func metricNamed(name string) metric {
	for _, m := range metrics {
		if m.Name == name {
			return m
		}
	}
	return metrics[0]
}

// buckets lists every bucket start in [start, end) so that a chart shows
// quiet hours as zero rather than joining the points around them.
func buckets(start, end time.Time, step time.Duration) []time.Time {
	var out []time.Time
	for t := start; t.Before(end) && len(out) < 10_000; t = t.Add(step) {
		out = append(out, t)
	}
	return out
}

// seriesChart turns time series into one chart of metric m.
func seriesChart(resp *adminv1.GetUsageTimeSeriesResponse, m metric, title string, label func(string) string) chart {
	step := 24 * time.Hour
	if resp.GetGranularity() == adminv1.UsageGranularity_USAGE_GRANULARITY_HOUR {
		step = time.Hour
	}
	xs := buckets(resp.GetStartTime().AsTime(), resp.GetEndTime().AsTime(), step)
	c := chart{Title: title, Unit: m.Unit, X: make([]int64, len(xs))}
	index := map[int64]int{}
	for i, x := range xs {
		c.X[i] = x.Unix()
		index[x.Unix()] = i
	}
	for _, s := range resp.GetSeries() {
		vals := make([]float64, len(xs))
		for _, p := range s.GetPoints() {
			if i, ok := index[p.GetStartTime().AsTime().Unix()]; ok {
				vals[i] = m.Value(p.GetTotals())
			}
		}
		c.Series = append(c.Series, chartSeries{Label: label(s.GetKey()), Values: vals})
	}
	if len(c.Series) == 0 {
		c.Series = []chartSeries{{Label: m.Title, Values: make([]float64, len(xs))}}
	}
	return c
}

// usageQuery is the explorer's filters, from the URL.
type usageQuery struct {
	Key, Model, Provider string
	From, To             string // yyyy-mm-dd, To inclusive
	Split, Group, Metric string
	start, end           time.Time
	hourly               bool
}

var (
	splits = []string{"", "model", "key", "provider"}
	groups = []string{"model", "key", "provider", "day", "hour"}
)

var groupBy = map[string]adminv1.UsageGroupBy{
	"model": adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL, "key": adminv1.UsageGroupBy_USAGE_GROUP_BY_KEY,
	"provider": adminv1.UsageGroupBy_USAGE_GROUP_BY_PROVIDER, "day": adminv1.UsageGroupBy_USAGE_GROUP_BY_DAY,
	"hour": adminv1.UsageGroupBy_USAGE_GROUP_BY_HOUR, "tenant": adminv1.UsageGroupBy_USAGE_GROUP_BY_TENANT,
}

// parseUsageQuery reads and checks the filters; the error is for the page.
func parseUsageQuery(q url.Values, now time.Time) (usageQuery, string) {
	u := usageQuery{
		Key: q.Get("key"), Model: strings.TrimSpace(q.Get("model")), Provider: strings.TrimSpace(q.Get("provider")),
		From: q.Get("from"), To: q.Get("to"), Split: q.Get("split"), Group: q.Get("group"), Metric: metricNamed(q.Get("metric")).Name,
	}
	if !slices.Contains(splits, u.Split) {
		u.Split = ""
	}
	if !slices.Contains(groups, u.Group) {
		u.Group = "model"
	}
	today := now.UTC().Truncate(24 * time.Hour)
	if u.To == "" {
		u.To = today.Format(time.DateOnly)
	}
	if u.From == "" {
		u.From = today.AddDate(0, 0, -29).Format(time.DateOnly)
	}
	from, err1 := time.Parse(time.DateOnly, u.From)
	to, err2 := time.Parse(time.DateOnly, u.To)
	switch {
	case err1 != nil || err2 != nil:
		return u, "Give the dates as yyyy-mm-dd."
	case to.Before(from):
		return u, "The end date is before the start date."
	case to.Sub(from) > 365*24*time.Hour:
		return u, "Pick at most a year."
	}
	u.start, u.end = from, to.Add(24*time.Hour)
	// Hours read well up to about three days; days beyond.
	u.hourly = u.end.Sub(u.start) <= 3*24*time.Hour
	if u.Group == "hour" && u.end.Sub(u.start) > 31*24*time.Hour {
		u.Group = "day"
	}
	return u, ""
}

// Encode is the query again, e.g. for the CSV link.
func (u usageQuery) Encode() string {
	v := url.Values{}
	for k, x := range map[string]string{"key": u.Key, "model": u.Model, "provider": u.Provider, "from": u.From, "to": u.To, "split": u.Split, "group": u.Group, "metric": u.Metric} {
		if x != "" {
			v.Set(k, x)
		}
	}
	return v.Encode()
}

type usageData struct {
	Q         usageQuery
	Chart     chart
	Rows      []usageRow
	Totals    *adminv1.UsageTotals
	Keys      []*adminv1.Key
	Models    []string
	Providers []string
	Splits    []string
	Groups    []string
	Metrics   []metric
	CSV       string
}

type usageRow struct {
	Label  string
	Totals *adminv1.UsageTotals
}

func (s *Server) usagePage(w http.ResponseWriter, r *http.Request, c *call) {
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return
	}
	q, msg := parseUsageQuery(r.URL.Query(), s.now())
	d := usageData{Q: q, Splits: splits, Groups: groups, Metrics: metrics}
	v := c.view("Usage", "usage")
	v.Tenant = t
	if msg != "" {
		v.Error, v.Data = msg, d
		s.render(w, r, http.StatusBadRequest, "usage", v)
		return
	}
	ctx := c.ctx(r)
	keys, err := listAll(func(token string) ([]*adminv1.Key, string, error) {
		resp, err := s.keys.ListKeys(ctx, &adminv1.ListKeysRequest{Tenant: t.GetId(), PageSize: 500, PageToken: token, IncludeRevoked: true})
		return resp.GetKeys(), resp.GetNextPageToken(), err
	})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	d.Keys = keys
	names := keyNames(keys)
	rows, totals, err := s.usageRows(r, c, t, q, names)
	if err != nil {
		if formError(err) {
			v.Error, v.Data = errorText(err), d
			s.render(w, r, http.StatusBadRequest, "usage", v)
			return
		}
		s.fail(w, r, c, err)
		return
	}
	d.Rows, d.Totals = rows, totals
	// The filter lists come from the range's usage, unfiltered.
	for dim, dst := range map[adminv1.UsageGroupBy]*[]string{adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL: &d.Models, adminv1.UsageGroupBy_USAGE_GROUP_BY_PROVIDER: &d.Providers} {
		resp, err := s.usage.SummarizeUsage(ctx, &adminv1.SummarizeUsageRequest{Tenant: t.GetId(), StartTime: timestamppb.New(q.start), EndTime: timestamppb.New(q.end), GroupBy: dim})
		if err != nil {
			s.fail(w, r, c, err)
			return
		}
		for _, g := range resp.GetGroups() {
			*dst = append(*dst, g.GetKey())
		}
		slices.Sort(*dst)
	}
	gran := adminv1.UsageGranularity_USAGE_GRANULARITY_DAY
	if q.hourly {
		gran = adminv1.UsageGranularity_USAGE_GRANULARITY_HOUR
	}
	series, err := s.usage.GetUsageTimeSeries(ctx, &adminv1.GetUsageTimeSeriesRequest{
		Tenant: t.GetId(), KeyId: q.Key, Model: q.Model, Provider: q.Provider,
		StartTime: timestamppb.New(q.start), EndTime: timestamppb.New(q.end), Granularity: gran, SplitBy: groupBy[q.Split],
	})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	m := metricNamed(q.Metric)
	d.Chart = seriesChart(series, m, m.Title, func(k string) string { return labelFor(q.Split, k, names) })
	d.CSV = tenantPath(t, "/usage.csv?"+q.Encode())
	v.Data = d
	s.render(w, r, http.StatusOK, "usage", v)
}

func keyNames(keys []*adminv1.Key) map[string]string {
	out := map[string]string{}
	for _, k := range keys {
		out[k.GetId()] = k.GetName() + " (" + k.GetPrefix() + "…)"
	}
	return out
}

// labelFor shows a group key: key ids as the key's name.
func labelFor(dim, key string, keyNames map[string]string) string {
	switch {
	case dim == "key" && key == "":
		return "(no key)"
	case dim == "key":
		if n := keyNames[key]; n != "" {
			return n
		}
	case key == "":
		return "All usage"
	}
	return key
}

func (s *Server) usageRows(r *http.Request, c *call, t *adminv1.Tenant, q usageQuery, names map[string]string) ([]usageRow, *adminv1.UsageTotals, error) {
	resp, err := s.usage.SummarizeUsage(c.ctx(r), &adminv1.SummarizeUsageRequest{
		Tenant: t.GetId(), KeyId: q.Key, Model: q.Model, Provider: q.Provider,
		StartTime: timestamppb.New(q.start), EndTime: timestamppb.New(q.end), GroupBy: groupBy[q.Group],
	})
	if err != nil {
		return nil, nil, err
	}
	rows := make([]usageRow, 0, len(resp.GetGroups()))
	for _, g := range resp.GetGroups() {
		rows = append(rows, usageRow{Label: labelFor(q.Group, g.GetKey(), names), Totals: g.GetTotals()})
	}
	return rows, resp.GetTotals(), nil
}

// usageCSV is the explorer's table as CSV.
func (s *Server) usageCSV(w http.ResponseWriter, r *http.Request, c *call) {
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return
	}
	q, msg := parseUsageQuery(r.URL.Query(), s.now())
	if msg != "" {
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	keys, err := listAll(func(token string) ([]*adminv1.Key, string, error) {
		resp, err := s.keys.ListKeys(c.ctx(r), &adminv1.ListKeysRequest{Tenant: t.GetId(), PageSize: 500, PageToken: token, IncludeRevoked: true})
		return resp.GetKeys(), resp.GetNextPageToken(), err
	})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	rows, _, err := s.usageRows(r, c, t, q, keyNames(keys))
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="usage-%s-%s-%s-by-%s.csv"`, t.GetSlug(), q.From, q.To, q.Group))
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{q.Group, "requests", "errors", "error_rate", "input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens", "cost_usd", "latency_p50_ms", "latency_p95_ms", "latency_mean_ms"})
	for _, row := range rows {
		x := row.Totals
		_ = cw.Write([]string{csvSafe(row.Label), itoa(x.GetRequests()), itoa(x.GetErrors()), strconv.FormatFloat(x.GetErrorRate(), 'f', 4, 64),
			itoa(x.GetInputTokens()), itoa(x.GetOutputTokens()), itoa(x.GetCachedInputTokens()), itoa(x.GetReasoningTokens()),
			strconv.FormatFloat(float64(x.GetCostMicros())/1e6, 'f', 6, 64), itoa(x.GetLatencyP50Ms()), itoa(x.GetLatencyP95Ms()), itoa(x.GetLatencyMeanMs())})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		s.log.WarnContext(r.Context(), "web: writing usage CSV", "err", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// csvSafe keeps a spreadsheet from reading a name as a formula (CSV
// injection): model and key names are chosen by tenants.
func csvSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

type overviewData struct {
	Month   *adminv1.UsageTotals
	Budgets []*adminv1.LimitStatus
	Charts  []chart
	Models  []usageRow
	Alert   string
	Since   time.Time
}

// overview shows this month's spend against the budgets and the last 30
// days of requests, tokens, errors and latency.
func (s *Server) overview(w http.ResponseWriter, r *http.Request, c *call) {
	t, ok := s.tenantOf(w, r, c)
	if !ok {
		return
	}
	ctx := c.ctx(r)
	now := s.now()
	start := monthStart(now)
	sum, err := s.usage.SummarizeUsage(ctx, &adminv1.SummarizeUsageRequest{Tenant: t.GetId(), StartTime: timestamppb.New(start), GroupBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	limits, err := s.policies.GetLimitStatus(ctx, &adminv1.GetLimitStatusRequest{Target: &adminv1.PolicyTarget{Target: &adminv1.PolicyTarget_Tenant{Tenant: t.GetId()}}})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	series, err := s.usage.GetUsageTimeSeries(ctx, &adminv1.GetUsageTimeSeriesRequest{
		Tenant: t.GetId(), StartTime: timestamppb.New(now.Truncate(24*time.Hour).AddDate(0, 0, -29)),
		Granularity: adminv1.UsageGranularity_USAGE_GRANULARITY_DAY,
	})
	if err != nil {
		s.fail(w, r, c, err)
		return
	}
	d := overviewData{Month: sum.GetTotals(), Alert: t.GetBudgetAlert(), Since: start}
	for _, l := range limits.GetLimits() {
		if strings.HasPrefix(l.GetName(), "budget_") {
			d.Budgets = append(d.Budgets, l)
		}
	}
	for _, g := range sum.GetGroups() {
		if len(d.Models) == 5 {
			break
		}
		d.Models = append(d.Models, usageRow{Label: g.GetKey(), Totals: g.GetTotals()})
	}
	same := func(string) string { return "" }
	for _, name := range []string{"cost", "requests", "tokens", "errors", "latency"} {
		m := metricNamed(name)
		ch := seriesChart(series, m, m.Title+", last 30 days", same)
		for i := range ch.Series {
			ch.Series[i].Label = m.Title
		}
		d.Charts = append(d.Charts, ch)
	}
	v := c.view(t.GetName(), "overview")
	v.Tenant, v.Data = t, d
	s.render(w, r, http.StatusOK, "overview", v)
}

// spendByTenant fills this month's spend per tenant id (operator only).
func (s *Server) spendByTenant(r *http.Request, c *call, start time.Time, out map[string]int64) error {
	resp, err := s.usage.SummarizeUsage(c.ctx(r), &adminv1.SummarizeUsageRequest{StartTime: timestamppb.New(start), GroupBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_TENANT})
	if err != nil {
		return err
	}
	for _, g := range resp.GetGroups() {
		out[g.GetKey()] = g.GetTotals().GetCostMicros()
	}
	return nil
}
