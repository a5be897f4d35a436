// Package rollup defines the usage rollups (ent UsageRollup): what one row
// adds up, how records are folded into rows, and how rows are read back as
// totals with latency percentiles. controlplane/usageingest writes rows in
// the transaction that stores the records; the admin API's analytics read
// them. docs/billing.md explains the design.
package rollup

import (
	"time"

	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/ent/schema"
)

// Buckets is the number of latency histogram buckets.
var Buckets = len(schema.LatencyBoundsMs) + 1

// Bucket returns the histogram bucket of a latency in milliseconds.
func Bucket(ms int64) int {
	for i, b := range schema.LatencyBoundsMs {
		if ms <= b {
			return i
		}
	}
	return len(schema.LatencyBoundsMs)
}

// Period is the length of a rollup's bucket.
type Period string

const (
	Hour Period = "hour"
	Day  Period = "day"
)

// Start returns the start of the period that holds t, in UTC.
func (p Period) Start(t time.Time) time.Time {
	t = t.UTC()
	if p == Day {
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
	return t.Truncate(time.Hour)
}

// AllKeys is the key id of the daily rows that add up every key (and no
// key) of a tenant, model, provider and status class: questions that do not
// ask about keys read those, a key's share of rows fewer. No key has this id
// (keys are version-4 UUIDs; ingest refuses it).
var AllKeys = uuid.Max

// Key identifies one rollup row, shard aside.
type Key struct {
	Period      Period
	BucketStart time.Time
	TenantID    uuid.UUID
	KeyID       uuid.UUID // uuid.Nil: no key
	Model       string
	Provider    string
	StatusClass int32
}

// Counts is what a rollup row adds up.
type Counts struct {
	Requests          int64
	Errors            int64
	InputTokens       int64
	OutputTokens      int64
	CachedInputTokens int64
	ReasoningTokens   int64
	CostMicros        int64
	LatencyMsSum      int64
	Latency           []int64 // len Buckets
}

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	c.Requests += o.Requests
	c.Errors += o.Errors
	c.InputTokens += o.InputTokens
	c.OutputTokens += o.OutputTokens
	c.CachedInputTokens += o.CachedInputTokens
	c.ReasoningTokens += o.ReasoningTokens
	c.CostMicros += o.CostMicros
	c.LatencyMsSum += o.LatencyMsSum
	if len(o.Latency) > 0 && len(c.Latency) == 0 {
		c.Latency = make([]int64, Buckets)
	}
	for i, n := range o.Latency {
		c.Latency[i] += n
	}
}

// Record is what a rollup needs of one usage record.
type Record struct {
	Time              time.Time
	TenantID          uuid.UUID
	KeyID             *uuid.UUID
	Model, Provider   string
	StatusCode        int32
	InputTokens       int64
	OutputTokens      int64
	CachedInputTokens int64
	ReasoningTokens   int64
	CostMicros        int64
	LatencyMs         int64
}

// Fold adds records into one delta per row: hourly and daily rows per key,
// and daily rows for every key together (AllKeys).
func Fold(recs []Record) map[Key]*Counts {
	out := map[Key]*Counts{}
	for _, r := range recs {
		c := Counts{
			Requests:          1,
			InputTokens:       r.InputTokens,
			OutputTokens:      r.OutputTokens,
			CachedInputTokens: r.CachedInputTokens,
			ReasoningTokens:   r.ReasoningTokens,
			CostMicros:        r.CostMicros,
			LatencyMsSum:      r.LatencyMs,
			Latency:           make([]int64, Buckets),
		}
		if r.StatusCode >= 400 {
			c.Errors = 1
		}
		c.Latency[Bucket(r.LatencyMs)] = 1
		key := Key{TenantID: r.TenantID, Model: r.Model, Provider: r.Provider, StatusClass: r.StatusCode / 100}
		if r.KeyID != nil {
			key.KeyID = *r.KeyID
		}
		hour, day := key, key
		hour.Period, hour.BucketStart = Hour, Hour.Start(r.Time)
		day.Period, day.BucketStart = Day, Day.Start(r.Time)
		everyKey := day
		everyKey.KeyID = AllKeys
		for _, k := range []Key{hour, day, everyKey} {
			if out[k] == nil {
				out[k] = &Counts{Latency: make([]int64, Buckets)}
			}
			out[k].Add(c)
		}
	}
	return out
}

// Percentile estimates the q-quantile (0 < q ≤ 1) of latencies from
// histogram counts, in milliseconds: it finds the bucket that holds the
// rank and interpolates linearly inside it. The result is within that
// bucket's bounds; for the open last bucket it is the last bound (a lower
// bound of the truth). 0 when there is nothing to read.
func Percentile(counts []int64, q float64) int64 {
	var total int64
	for _, n := range counts {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen int64
	bounds := schema.LatencyBoundsMs
	for i, n := range counts {
		if n == 0 {
			continue
		}
		if float64(seen+n) >= rank {
			if i == len(bounds) {
				return bounds[len(bounds)-1]
			}
			lo := int64(0)
			if i > 0 {
				lo = bounds[i-1]
			}
			frac := (rank - float64(seen)) / float64(n)
			return lo + int64(frac*float64(bounds[i]-lo)+0.5)
		}
		seen += n
	}
	return bounds[len(bounds)-1]
}
