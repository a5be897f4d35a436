package quotalease_test

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/extproc/quota"
	"github.com/tollgate-dev/tollgate/extproc/quotalease"
	"github.com/tollgate-dev/tollgate/telemetry"
)

// The lease metrics follow what the ledger does: reports sent, the
// authority's answers, the leases held, and the link being up.
func TestLeaseActivityMetrics(t *testing.T) {
	tel, err := telemetry.New(t.Context(), telemetry.Options{Service: "quotalease-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	f, c := startAuthority(t, 1_000_000)
	l, e := startLedger(t, c, quotalease.Options{LeaseRequests: 10})
	if err := l.Instrument(tel.Meters()); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		r, err := e.Admit(time.Now(), budget(1_000_000), quota.Cost{Micros: 1000})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		r.Settle(quota.Cost{Micros: 400})
	}
	fams, err := tel.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if up, ok := fams.Sum("tollgate_quota_authority_connected"); !ok || up != 1 {
		t.Errorf("authority connected = %v, want 1", up)
	}
	if n, ok := fams.Sum("tollgate_quota_leases"); !ok || n != 1 {
		t.Errorf("leases held = %v, want 1 (one budget counter)", n)
	}
	reports, _ := fams.Sum("tollgate_quota_lease_reports_total")
	if reports < 1 || reports > float64(f.reports.Load()) {
		t.Errorf("reports sent = %v; the authority received %d", reports, f.reports.Load())
	}
	if ok, _ := fams.Sum("tollgate_quota_lease_answers_total", "tollgate_lease_status", "ok"); ok < 1 {
		t.Errorf("ok answers = %v, want at least the first grant", ok)
	}
	if granted, _ := fams.Sum("tollgate_quota_lease_waits_total", "tollgate_granted", "true"); granted < 1 {
		t.Errorf("granted waits = %v: the first request had to wait for its lease", granted)
	}
}
