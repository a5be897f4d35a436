package quotalease_test

import (
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/extproc/quota"
	"github.com/tollgate-dev/tollgate/extproc/quotalease"
)

func everyLimit() []quota.Subject {
	var l quota.Limits
	l.RequestsPerMinute, l.TokensPerMinute, l.ConcurrentRequests = quota.Max(100_000_000_000), quota.Max(100_000_000_000), quota.Max(1<<40)
	for _, p := range []quota.Period{quota.Day, quota.Month, quota.Total} {
		l.Budgets[p] = quota.Budget{Hard: quota.Max(1 << 60), Soft: quota.Max(1 << 59)}
	}
	return []quota.Subject{{Kind: quota.Tenant, ID: tenant, Limits: l}, {Kind: quota.Key, ID: "k", Limits: l}}
}

func benchAdmitSettle(b *testing.B, e *quota.Engine) {
	s := everyLimit()
	b.ReportAllocs()
	for b.Loop() {
		r, err := e.Admit(time.Now(), s, quota.Cost{Tokens: 4096, Micros: 20_000})
		if err != nil {
			b.Fatal(err)
		}
		r.Settle(quota.Cost{Tokens: 1200, Micros: 6_000})
	}
}

// The lease ledger on a tenant and key with every limit set (an authority
// in the same process, over gRPC), against the local ledger.
func BenchmarkAdmitSettleLeased(b *testing.B) {
	f, c := startAuthority(b, 1<<62)
	_, e := startLedger(b, c, quotalease.Options{})
	benchAdmitSettle(b, e)
	// Reports of any kind (renewals in the background included): an upper
	// bound on the requests that waited for the authority.
	b.ReportMetric(float64(f.reports.Load())/float64(b.N), "reports/op")
}

func BenchmarkAdmitSettleLocal(b *testing.B) {
	benchAdmitSettle(b, quota.New(quota.Options{}))
}
