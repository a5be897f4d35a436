package ctl

import (
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

func TestDollars(t *testing.T) {
	for m, want := range map[int64]string{
		0:             "$0.000000",
		1:             "$0.000001",
		1500:          "$0.001500",
		2_500_000:     "$2.500000",
		123_456_789:   "$123.456789",
		-1:            "-$0.000001",
		math.MaxInt64: "$9223372036854.775807",
	} {
		if got := dollars(m); got != want {
			t.Errorf("dollars(%d) = %q, want %q", m, got, want)
		}
	}
}

func TestUsageRequests(t *testing.T) {
	since := ts(testNow.Add(-7 * 24 * time.Hour))
	until := ts(time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
	tests := []struct {
		name   string
		args   []string
		method string
		want   proto.Message
	}{
		{
			name:   "list shows the newest 100 by default",
			args:   []string{"usage", "list"},
			method: "ListUsageRecords",
			want:   &adminv1.ListUsageRecordsRequest{PageSize: 100},
		},
		{
			name:   "list with every filter",
			args:   []string{"usage", "list", "--tenant", "acme", "--key", keyID, "--model", "gpt-4o", "--since", "7d", "--until", "2026-01-02T00:00:00Z", "--limit", "0"},
			method: "ListUsageRecords",
			want:   &adminv1.ListUsageRecordsRequest{Tenant: "acme", KeyId: keyID, Model: "gpt-4o", StartTime: since, EndTime: until},
		},
		{
			name:   "summary by day unless told",
			args:   []string{"usage", "summary"},
			method: "SummarizeUsage",
			want:   &adminv1.SummarizeUsageRequest{GroupBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_DAY},
		},
		{
			name:   "summary by provider with filters",
			args:   []string{"usage", "summary", "--by", "provider", "--tenant", "acme", "--key", keyID, "--model", "gpt-4o", "--since", "7d", "--until", "2026-01-02T00:00:00Z"},
			method: "SummarizeUsage",
			want: &adminv1.SummarizeUsageRequest{Tenant: "acme", KeyId: keyID, Model: "gpt-4o", StartTime: since, EndTime: until,
				GroupBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_PROVIDER},
		},
		{
			name:   "series by day, one series, unless told",
			args:   []string{"usage", "series"},
			method: "GetUsageTimeSeries",
			want:   &adminv1.GetUsageTimeSeriesRequest{Granularity: adminv1.UsageGranularity_USAGE_GRANULARITY_DAY},
		},
		{
			name:   "series by hour per model with filters",
			args:   []string{"usage", "series", "--every", "hour", "--split", "model", "--tenant", "acme", "--provider", "openai", "--since", "7d", "--until", "2026-01-02T00:00:00Z"},
			method: "GetUsageTimeSeries",
			want: &adminv1.GetUsageTimeSeriesRequest{Tenant: "acme", Provider: "openai", StartTime: since, EndTime: until,
				Granularity: adminv1.UsageGranularity_USAGE_GRANULARITY_HOUR, SplitBy: adminv1.UsageGroupBy_USAGE_GROUP_BY_MODEL},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			r := f.run(t, tt.args...)
			if r.code != exitOK {
				t.Fatalf("tollgatectl %v: %v", tt.args, r)
			}
			assertProto(t, f.only(t, tt.method).req, tt.want)
		})
	}
}

func TestUsageCommandLineErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown grouping", []string{"usage", "summary", "--by", "week"}, `--by "week": use hour, day, model, key, provider or tenant`},
		{"unknown bucket", []string{"usage", "series", "--every", "week"}, `--every "week": use hour or day`},
		{"series split by time", []string{"usage", "series", "--split", "day"}, `--split "day": use model, key, provider or tenant`},
		{"until before since", []string{"usage", "list", "--since", "1h", "--until", "2h"}, "--until must be after --since"},
		{"bad since", []string{"usage", "summary", "--since", "yesterday"}, "--since: invalid time"},
		{"negative limit", []string{"usage", "list", "--limit", "-1"}, "--limit must not be negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			r := f.run(t, tt.args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("got %v, want exit %d saying %q", r, exitUsage, tt.want)
			}
			if len(f.recorded()) != 0 {
				t.Errorf("sent %v for a bad command line", methods(f.recorded()))
			}
		})
	}
}

var (
	usageRecords = []*adminv1.UsageRecord{
		{Id: "u2", RequestId: "7c1e0a52-9d43-4d8e-b1a0-6f0a1c2b3d4e", TenantId: tenantUUID, KeyId: keyID, Model: "gpt-4o",
			Provider: "openai", UpstreamModel: "gpt-4o-2024-08-06", InputTokens: 1200, OutputTokens: 350, CachedInputTokens: 1024,
			ReasoningTokens: 0, CostMicros: 4_250, StatusCode: 200, Streamed: true, LatencyMs: 1840, TtftMs: 230, Time: updated},
		{Id: "u1", RequestId: "0e9f8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f", TenantId: tenantUUID, Model: "claude-sonnet",
			Provider: "anthropic", InputTokens: 80, OutputTokens: 0, Estimated: true, CostMicros: 240, StatusCode: 429,
			ErrorType: "rate_limited", LatencyMs: 95, Time: created},
	}
	usageSummary = &adminv1.SummarizeUsageResponse{
		Groups: []*adminv1.UsageGroup{
			{Key: "gpt-4o", Totals: &adminv1.UsageTotals{Requests: 1520, Errors: 12, InputTokens: 1_830_000, OutputTokens: 402_000, CachedInputTokens: 900_000, ReasoningTokens: 0, CostMicros: 8_345_120,
				ErrorRate: 12.0 / 1520, LatencyP50Ms: 820, LatencyP95Ms: 4100}},
			{Key: "claude-sonnet", Totals: &adminv1.UsageTotals{Requests: 88, Errors: 0, InputTokens: 120_500, OutputTokens: 33_000, CostMicros: 856_500,
				LatencyP50Ms: 1300, LatencyP95Ms: 2950}},
		},
		Totals: &adminv1.UsageTotals{Requests: 1608, Errors: 12, InputTokens: 1_950_500, OutputTokens: 435_000, CachedInputTokens: 900_000, CostMicros: 9_201_620,
			ErrorRate: 12.0 / 1608, LatencyP50Ms: 840, LatencyP95Ms: 4000},
		StartTime: created, EndTime: updated,
	}
	usageSeries = &adminv1.GetUsageTimeSeriesResponse{
		Series: []*adminv1.UsageSeries{
			{Key: "gpt-4o", Points: []*adminv1.UsagePoint{
				{StartTime: created, Totals: &adminv1.UsageTotals{Requests: 1000, Errors: 10, ErrorRate: 0.01, InputTokens: 1_200_000, OutputTokens: 300_000, CostMicros: 6_000_000, LatencyP50Ms: 800, LatencyP95Ms: 4000}},
				{StartTime: updated, Totals: &adminv1.UsageTotals{Requests: 520, Errors: 2, ErrorRate: 2.0 / 520, InputTokens: 630_000, OutputTokens: 102_000, CostMicros: 2_345_120, LatencyP50Ms: 850, LatencyP95Ms: 4300}},
			}},
			{Key: "claude-sonnet", Points: []*adminv1.UsagePoint{
				{StartTime: updated, Totals: &adminv1.UsageTotals{Requests: 88, InputTokens: 120_500, OutputTokens: 33_000, CostMicros: 856_500, LatencyP50Ms: 1300, LatencyP95Ms: 2950}},
			}},
		},
		StartTime: created, EndTime: updated, Granularity: adminv1.UsageGranularity_USAGE_GRANULARITY_DAY,
	}
)

func TestUsageGolden(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		setup func(f *fakeServer)
	}{
		{"usage-list.table", []string{"usage", "list"}, func(f *fakeServer) {
			f.replyWith("ListUsageRecords", &adminv1.ListUsageRecordsResponse{Records: usageRecords})
		}},
		{"usage-list.json", []string{"usage", "list", "-o", "json"}, func(f *fakeServer) {
			f.replyWith("ListUsageRecords", &adminv1.ListUsageRecordsResponse{Records: usageRecords})
		}},
		{"usage-summary.table", []string{"usage", "summary", "--by", "model"}, func(f *fakeServer) {
			f.replyWith("SummarizeUsage", usageSummary)
		}},
		{"usage-summary.json", []string{"usage", "summary", "--by", "model", "-o", "json"}, func(f *fakeServer) {
			f.replyWith("SummarizeUsage", usageSummary)
		}},
		{"usage-series.table", []string{"usage", "series", "--split", "model"}, func(f *fakeServer) {
			f.replyWith("GetUsageTimeSeries", usageSeries)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			tt.setup(f)
			r := f.run(t, tt.args...)
			if r.code != exitOK {
				t.Fatalf("tollgatectl %v: %v", tt.args, r)
			}
			checkGolden(t, tt.name, r.stdout)
		})
	}
}
