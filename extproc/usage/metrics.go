package usage

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Instrument exports the Recorder's counters as metrics of mp, read when
// they are collected: the hot path (Record) pays nothing for them.
func (r *Recorder) Instrument(mp metric.MeterProvider) error {
	m := mp.Meter("github.com/tollgate-dev/tollgate/extproc/usage")
	queue, err1 := m.Int64ObservableGauge("tollgate.usage.queue.records", metric.WithUnit("{record}"),
		metric.WithDescription("Usage records in memory waiting for a batch to the control plane."))
	inflight, err2 := m.Int64ObservableGauge("tollgate.usage.inflight.batches", metric.WithUnit("{batch}"),
		metric.WithDescription("Usage batches sent to the control plane and not yet acknowledged."))
	spill, err3 := m.Int64ObservableGauge("tollgate.usage.spill.size", metric.WithUnit("By"),
		metric.WithDescription("Bytes of usage records in the spill directory, waiting for the control plane."))
	connected, err4 := m.Int64ObservableGauge("tollgate.usage.connected",
		metric.WithDescription("1 while a usage stream to the control plane is open, else 0."))
	records, err5 := m.Int64ObservableCounter("tollgate.usage.records", metric.WithUnit("{record}"),
		metric.WithDescription("Usage records by what became of them: recorded (given to the queue), acked (stored by the control plane), rejected (refused as invalid), spilled (written to disk), dropped (lost)."))
	replayed, err6 := m.Int64ObservableCounter("tollgate.usage.spill.replayed", metric.WithUnit("{batch}"),
		metric.WithDescription("Spilled usage batches sent again to the control plane."))
	for _, err := range []error{err1, err2, err3, err4, err5, err6} {
		if err != nil {
			return fmt.Errorf("usage: creating metrics: %w", err)
		}
	}
	outcome := func(v string) metric.ObserveOption {
		return metric.WithAttributes(outcomeKey.String(v))
	}
	recorded, acked, rejected, spilled, dropped := outcome("recorded"), outcome("acked"), outcome("rejected"), outcome("spilled"), outcome("dropped")
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := r.Stats()
		o.ObserveInt64(queue, int64(s.QueueDepth))
		o.ObserveInt64(inflight, int64(s.InFlight))
		o.ObserveInt64(spill, s.SpillBytes)
		c := int64(0)
		if s.Connected {
			c = 1
		}
		o.ObserveInt64(connected, c)
		o.ObserveInt64(records, s.Recorded, recorded)
		o.ObserveInt64(records, s.Acked, acked)
		o.ObserveInt64(records, s.Rejected, rejected)
		o.ObserveInt64(records, s.Spilled, spilled)
		o.ObserveInt64(records, s.Dropped, dropped)
		o.ObserveInt64(replayed, s.Replayed)
		return nil
	}, queue, inflight, spill, connected, records, replayed)
	if err != nil {
		return fmt.Errorf("usage: registering the metrics callback: %w", err)
	}
	return nil
}

var outcomeKey = attribute.Key("tollgate.outcome")
