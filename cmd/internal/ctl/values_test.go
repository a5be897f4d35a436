package ctl

import (
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

func TestParseMicros(t *testing.T) {
	for in, want := range map[string]int64{
		"$2.50":                 2500000,
		"2.50":                  2500000,
		"$2.5":                  2500000,
		"0.000001":              1,
		"$0.000001":             1,
		"2500000":               2500000,
		"$2500000":              2500000000000,
		"$3":                    3000000,
		"3":                     3,
		"0":                     0,
		"$0.00":                 0,
		"0.1":                   100000,
		"9223372036854.775807":  math.MaxInt64,
		"9223372036854775807":   math.MaxInt64,
		"$9223372036854.775807": math.MaxInt64,
	} {
		got, err := parseMicros(in)
		if err != nil || got != want {
			t.Errorf("parseMicros(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, why := range map[string]string{
		"0.0000001":            "at most 6 decimals",
		"$1.1234567":           "at most 6 decimals",
		"-1":                   "negative",
		"$-1":                  "negative",
		"-0.5":                 "negative",
		"":                     "want micro-dollars",
		"$":                    "want micro-dollars",
		"1.":                   "want micro-dollars",
		".50":                  "quote dollar amounts",
		"1,000":                "want micro-dollars",
		"1e6":                  "want micro-dollars",
		"+1":                   "want micro-dollars",
		" 1":                   "want micro-dollars",
		"2.50 USD":             "want micro-dollars",
		"9223372036854.775808": "too large",
		"9223372036854775808":  "too large",
		"99999999999999999999": "too large",
	} {
		got, err := parseMicros(in)
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("parseMicros(%q) = %d, %v; want an error saying %q", in, got, err, why)
		}
	}
}

func TestFormatMicros(t *testing.T) {
	for in, want := range map[int64]string{
		0:             "$0.00",
		1:             "$0.000001",
		2500000:       "$2.50",
		15000000:      "$15.00",
		1234567:       "$1.234567",
		100000:        "$0.10",
		math.MaxInt64: "$9223372036854.775807",
	} {
		if got := formatMicros(in); got != want {
			t.Errorf("formatMicros(%d) = %q, want %q", in, got, want)
		}
		// What is printed must read back as the same amount.
		if back, err := parseMicros(formatMicros(in)); err != nil || back != in {
			t.Errorf("parseMicros(formatMicros(%d)) = %d, %v", in, back, err)
		}
	}
}

func TestParseTime(t *testing.T) {
	now := testNow
	for _, tt := range []struct {
		in      string
		forward bool
		want    time.Time
	}{
		{"720h", true, now.Add(720 * time.Hour)},
		{"30d", true, now.Add(30 * 24 * time.Hour)},
		{"90m", false, now.Add(-90 * time.Minute)},
		{"7d", false, now.Add(-7 * 24 * time.Hour)},
		{"2026-03-01T12:00:00+01:00", true, time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)},
	} {
		got, err := parseTime(tt.in, now, tt.forward)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseTime(%q, forward=%v) = %v, %v; want %v", tt.in, tt.forward, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "tomorrow", "-1h", "0s", "1.5d", "d", "2026-03-01", "99999999999999d"} {
		if got, err := parseTime(in, now, true); err == nil {
			t.Errorf("parseTime(%q) = %v, want an error", in, got)
		}
	}
}

func TestParseDeployment(t *testing.T) {
	d, err := parseDeployment("provider=p1, upstream=gpt-4o,priority=2")
	if err != nil {
		t.Fatal(err)
	}
	if got := formatDeployment(d); got != "provider=p1,upstream=gpt-4o,weight=1,priority=2" {
		t.Errorf("round trip = %q", got)
	}
	for in, want := range map[string]*adminv1.Deployment{
		"provider=p1,upstream=u,no-training=true,retention=zero":     {ProviderId: "p1", UpstreamModel: "u", Weight: 1, NoTraining: true, Retention: adminv1.DataRetention_DATA_RETENTION_ZERO},
		"provider=p1,upstream=u,retention=30d":                       {ProviderId: "p1", UpstreamModel: "u", Weight: 1, Retention: adminv1.DataRetention_DATA_RETENTION_LIMITED, RetentionDays: 30},
		"provider=p1,upstream=u,retention=unknown,no-training=false": {ProviderId: "p1", UpstreamModel: "u", Weight: 1, Retention: adminv1.DataRetention_DATA_RETENTION_UNKNOWN},
	} {
		d, err := parseDeployment(in)
		if err != nil || !proto.Equal(d, want) {
			t.Errorf("parseDeployment(%q) = %v, %v; want %v", in, d, err, want)
		}
		again, err := parseDeployment(formatDeployment(d))
		if err != nil || again.GetRetentionDays() != d.GetRetentionDays() || again.GetNoTraining() != d.GetNoTraining() {
			t.Errorf("%q does not survive formatDeployment: %q", in, formatDeployment(d))
		}
	}
	for _, in := range []string{
		"", "provider=p1", "upstream=u", "provider=p1,upstream=u,weight=0", "provider=p1,upstream=u,priority=-1",
		"provider=p1,upstream=u,weight=x", "provider=p1,upstream=u,region=eu", "provider=p1,provider=p2,upstream=u",
		"provider=,upstream=u", "provider=p1,upstream=u,weight=99999999999",
		"provider=p1,upstream=u,no-training=yes please", "provider=p1,upstream=u,retention=forever",
		"provider=p1,upstream=u,retention=0d", "provider=p1,upstream=u,retention=d", "provider=p1,upstream=u,retention=30",
	} {
		if _, err := parseDeployment(in); err == nil {
			t.Errorf("parseDeployment(%q) accepted", in)
		}
	}
}

func TestParseBudget(t *testing.T) {
	b, err := parseBudget("total:soft=$1.5")
	if err != nil {
		t.Fatal(err)
	}
	if b.HardLimitMicros != nil || b.GetSoftLimitMicros() != 1500000 || formatBudget(b) != "total:soft=$1.50" {
		t.Errorf("parseBudget(total:soft=$1.5) = %v", b)
	}
	for _, in := range []string{"day", "day:", "day:hard", "day:hard=1,hard=2", "day:max=1", "year:hard=1", "day:hard=-1", "day:hard=0.0000001"} {
		if _, err := parseBudget(in); err == nil {
			t.Errorf("parseBudget(%q) accepted", in)
		}
	}
}
