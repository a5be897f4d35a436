package quota

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// benchLimits sets every limit, high enough never to refuse in a
// benchmark run: the cost measured is that of checking and counting them
// all.
func benchLimits() Limits {
	return Limits{
		RequestsPerMinute: Max(maxRate), TokensPerMinute: Max(maxRate), ConcurrentRequests: Max(1 << 40),
		Budgets: [numPeriods]Budget{
			Day:   {Hard: Max(1 << 60), Soft: Max(1 << 59)},
			Month: {Hard: Max(1 << 61), Soft: Max(1 << 59)},
			Total: {Hard: Max(1 << 62), Soft: Max(1 << 59)},
		},
	}
}

func benchEngine() *Engine {
	return New(Options{Now: func() time.Time { return noon }})
}

func admitSettle(b *testing.B, e *Engine, s []Subject) {
	r, err := e.Admit(noon, s, Cost{Tokens: 4096, Micros: 20_000})
	if err != nil {
		b.Fatal(err)
	}
	r.Settle(Cost{Tokens: 1200, Micros: 6_000})
}

// One request at a time: Admit and Settle against a tenant and a key with
// every limit set.
func BenchmarkAdmitSettle(b *testing.B) {
	e := benchEngine()
	s := []Subject{tenant("tenant-0001", benchLimits()), key("key-0001", benchLimits())}
	b.ReportAllocs()
	for b.Loop() {
		admitSettle(b, e, s)
	}
}

// Every goroutine on the same tenant and key: the worst case for the
// per-subject locks.
func BenchmarkAdmitSettleParallelOneKey(b *testing.B) {
	e := benchEngine()
	s := []Subject{tenant("tenant-0001", benchLimits()), key("key-0001", benchLimits())}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			admitSettle(b, e, s)
		}
	})
}

// Each goroutine on its own tenant and key.
func BenchmarkAdmitSettleParallelManyTenants(b *testing.B) {
	e := benchEngine()
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := strconv.FormatInt(n.Add(1), 10)
		s := []Subject{tenant("tenant-"+i, benchLimits()), key("key-"+i, benchLimits())}
		for pb.Next() {
			admitSettle(b, e, s)
		}
	})
}

// The refusal path: a key whose budget is spent.
func BenchmarkAdmitRefused(b *testing.B) {
	e := benchEngine()
	kl := benchLimits()
	kl.Budgets[Day].Hard = Max(0)
	s := []Subject{tenant("tenant-0001", benchLimits()), key("key-0001", kl)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Admit(noon, s, Cost{Tokens: 4096, Micros: 20_000}); err == nil {
			b.Fatal("admitted")
		}
	}
}
