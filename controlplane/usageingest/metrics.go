package usageingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
)

// ingestMetrics are the Server's instruments; nil until Instrument.
type ingestMetrics struct {
	batch   metric.Float64Histogram
	records metric.Int64Counter

	ok, failed                     metric.RecordOption
	accepted, rejected, storedOpts metric.AddOption
}

// Instrument exports the Server's metrics to mp: the duration of each batch
// stored (by outcome), and records by outcome — accepted (valid), rejected
// (invalid, never stored), stored (new: a resent record is accepted but
// not stored again). Call it once, before serving.
func (s *Server) Instrument(mp metric.MeterProvider) error {
	m := mp.Meter("github.com/tollgate-dev/tollgate/controlplane/usageingest")
	batch, err1 := m.Float64Histogram("tollgate.usage.ingest.batch.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to validate and store one batch of usage records, by outcome (stored, error: the sender resends it)."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	records, err2 := m.Int64Counter("tollgate.usage.ingest.records", metric.WithUnit("{record}"),
		metric.WithDescription("Usage records received by the control plane, by outcome: accepted, rejected (invalid), stored (new)."))
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("usageingest: creating metrics: %w", err)
	}
	outcome := func(v string) attribute.KeyValue { return attribute.String("tollgate.outcome", v) }
	s.metrics = &ingestMetrics{
		batch: batch, records: records,
		ok:         metric.WithAttributes(outcome("stored")),
		failed:     metric.WithAttributes(outcome("error")),
		accepted:   metric.WithAttributes(outcome("accepted")),
		rejected:   metric.WithAttributes(outcome("rejected")),
		storedOpts: metric.WithAttributes(outcome("stored")),
	}
	return nil
}

func (m *ingestMetrics) batchDone(ctx context.Context, start time.Time, resp *usagev1.IngestResponse, err error) {
	if m == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	if err != nil {
		m.batch.Record(ctx, time.Since(start).Seconds(), m.failed)
		return
	}
	m.batch.Record(ctx, time.Since(start).Seconds(), m.ok)
	m.records.Add(ctx, int64(resp.GetAccepted()), m.accepted)
	m.records.Add(ctx, int64(len(resp.GetRejected())), m.rejected)
}

// stored counts n records new to the store, in the metrics and on the
// batch's span.
func (m *ingestMetrics) stored(ctx context.Context, n int) {
	batchOf(ctx).addStored(n)
	if m == nil || n == 0 {
		return
	}
	m.records.Add(context.WithoutCancel(ctx), int64(n), m.storedOpts)
}
