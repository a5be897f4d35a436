package rollup

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hist := func(set map[int]int64) []int64 {
		h := make([]int64, Buckets)
		for i, n := range set {
			h[i] = n
		}
		return h
	}
	for _, tt := range []struct {
		name   string
		counts []int64
		q      float64
		want   int64
	}{
		{"nothing", hist(nil), 0.5, 0},
		{"one bucket, middle", hist(map[int]int64{Bucket(1000): 10}), 0.5, 875}, // (750, 1000]
		{"one bucket, top", hist(map[int]int64{Bucket(1000): 10}), 1, 1000},     // the bound
		{"first bucket from zero", hist(map[int]int64{0: 4}), 0.5, 3},           // (0, 5], 2.5 rounds up
		{"slower than the last bound", hist(map[int]int64{Buckets - 1: 3}), 0.95, 60_000},
		{"rank in the second group", hist(map[int]int64{Bucket(20): 50, Bucket(300): 50}), 0.95, 290}, // 200 + 0.9·100
	} {
		if got := Percentile(tt.counts, tt.q); got != tt.want {
			t.Errorf("%s: Percentile(q=%v) = %d, want %d", tt.name, tt.q, got, tt.want)
		}
	}
}

func TestFoldCountsEachRecordOncePerPeriod(t *testing.T) {
	at := time.Date(2026, 3, 1, 23, 59, 0, 0, time.UTC)
	got := Fold([]Record{
		{Time: at, Model: "m", StatusCode: 200, CostMicros: 5, LatencyMs: 40},
		{Time: at.Add(2 * time.Minute), Model: "m", StatusCode: 503, CostMicros: 7, LatencyMs: 40},
	})
	if len(got) != 6 { // two hours, two days, two days of every key
		t.Fatalf("%d rows, want 6: %v", len(got), got)
	}
	for k, c := range got {
		if c.Requests != 1 || c.Latency[Bucket(40)] != 1 {
			t.Errorf("%v: %+v", k, c)
		}
		if want := int64(k.StatusClass / 5); c.Errors != want {
			t.Errorf("%v: %d errors, want %d", k, c.Errors, want)
		}
	}
}
