package quotalease

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	quotav1 "github.com/tollgate-dev/tollgate/api/tollgate/quota/v1"
)

// activity counts what a Ledger does with the quota authority, for metrics.
type activity struct {
	reports                        atomic.Int64 // lease reports sent
	ok, expired, released, refused atomic.Int64 // answers, by status
	granted, denied, waitNanos     atomic.Int64 // requests that waited for the authority, by outcome
}

func (a *activity) answered(s quotav1.LeaseStatus) {
	switch s {
	case quotav1.LeaseStatus_LEASE_STATUS_OK:
		a.ok.Add(1)
	case quotav1.LeaseStatus_LEASE_STATUS_EXPIRED:
		a.expired.Add(1)
	case quotav1.LeaseStatus_LEASE_STATUS_RELEASED:
		a.released.Add(1)
	default:
		a.refused.Add(1)
	}
}

// waited counts a request that waited for the authority from start;
// *granted tells whether the wait got it the units.
func (a *activity) waited(start time.Time, granted *bool) {
	if *granted {
		a.granted.Add(1)
	} else {
		a.denied.Add(1)
	}
	a.waitNanos.Add(int64(time.Since(start)))
}

// Instrument exports the Ledger's lease activity as metrics of mp, read
// when they are collected.
func (l *Ledger) Instrument(mp metric.MeterProvider) error {
	m := mp.Meter("github.com/tollgate-dev/tollgate/extproc/quotalease")
	reports, err1 := m.Int64ObservableCounter("tollgate.quota.lease.reports", metric.WithUnit("{report}"),
		metric.WithDescription("Lease reports (renewals, returns, releases) sent to the quota authority."))
	answers, err2 := m.Int64ObservableCounter("tollgate.quota.lease.answers", metric.WithUnit("{answer}"),
		metric.WithDescription("The quota authority's answers to lease reports, by status: ok, expired, released, refused."))
	waits, err3 := m.Int64ObservableCounter("tollgate.quota.lease.waits", metric.WithUnit("{request}"),
		metric.WithDescription("Requests that waited for the quota authority because their lease could not cover them, by whether the wait got them the units (granted true/false)."))
	waitTime, err4 := m.Float64ObservableCounter("tollgate.quota.lease.wait.time", metric.WithUnit("s"),
		metric.WithDescription("Time requests spent waiting for the quota authority, in total."))
	leases, err5 := m.Int64ObservableGauge("tollgate.quota.leases", metric.WithUnit("{lease}"),
		metric.WithDescription("Leases this replica holds at the quota authority."))
	up, err6 := m.Int64ObservableGauge("tollgate.quota.authority.connected",
		metric.WithDescription("1 while a stream to the quota authority is open, else 0."))
	for _, err := range []error{err1, err2, err3, err4, err5, err6} {
		if err != nil {
			return fmt.Errorf("quotalease: creating metrics: %w", err)
		}
	}
	status := func(v string) metric.ObserveOption {
		return metric.WithAttributes(attribute.String("tollgate.lease.status", v))
	}
	ok, expired, released, refused := status("ok"), status("expired"), status("released"), status("refused")
	grantedOpt := metric.WithAttributes(attribute.Bool("tollgate.granted", true))
	deniedOpt := metric.WithAttributes(attribute.Bool("tollgate.granted", false))
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		a := &l.act
		o.ObserveInt64(reports, a.reports.Load())
		o.ObserveInt64(answers, a.ok.Load(), ok)
		o.ObserveInt64(answers, a.expired.Load(), expired)
		o.ObserveInt64(answers, a.released.Load(), released)
		o.ObserveInt64(answers, a.refused.Load(), refused)
		o.ObserveInt64(waits, a.granted.Load(), grantedOpt)
		o.ObserveInt64(waits, a.denied.Load(), deniedOpt)
		o.ObserveFloat64(waitTime, time.Duration(a.waitNanos.Load()).Seconds())
		l.mu.Lock()
		n := len(l.slots)
		l.mu.Unlock()
		o.ObserveInt64(leases, int64(n))
		c := int64(0)
		if l.up.Load() {
			c = 1
		}
		o.ObserveInt64(up, c)
		return nil
	}, reports, answers, waits, waitTime, leases, up)
	if err != nil {
		return fmt.Errorf("quotalease: registering the metrics callback: %w", err)
	}
	return nil
}
