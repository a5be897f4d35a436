package store

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// storeMetrics are the Store's instruments; nil until Instrument.
type storeMetrics struct {
	txDuration          metric.Float64Histogram
	committed, rejected metric.RecordOption
}

// dbSystem is the db.system.name of a dialect (OpenTelemetry's database
// semantic conventions).
func dbSystem(d Dialect) string {
	if d == Postgres {
		return "postgresql"
	}
	return string(d)
}

// Instrument exports the Store's metrics to mp: transaction durations and
// retries (every write goes through InTx), and the connection pool. Call it
// once, before the Store is used.
func (s *Store) Instrument(mp metric.MeterProvider) error {
	m := mp.Meter("github.com/tollgate-dev/tollgate/controlplane/store")
	system := attribute.String("db.system.name", dbSystem(s.dialect))
	tx, err1 := m.Float64Histogram("tollgate.db.transaction.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of each store transaction, retries and their backoff included, by outcome (committed, error)."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	retries, err2 := m.Int64ObservableCounter("tollgate.db.transaction.retries", metric.WithUnit("{retry}"),
		metric.WithDescription("Transaction attempts after the first: serialization conflicts and other retryable errors."))
	conns, err3 := m.Int64ObservableUpDownCounter("db.client.connection.count", metric.WithUnit("{connection}"),
		metric.WithDescription("Connections in the pool, by state (idle, used)."))
	maxConns, err4 := m.Int64ObservableUpDownCounter("db.client.connection.max", metric.WithUnit("{connection}"),
		metric.WithDescription("The most connections the pool opens (0: no limit)."))
	waits, err5 := m.Int64ObservableCounter("tollgate.db.pool.waits", metric.WithUnit("{wait}"),
		metric.WithDescription("Times a caller waited for a free connection."))
	waitTime, err6 := m.Float64ObservableCounter("tollgate.db.pool.wait.time", metric.WithUnit("s"),
		metric.WithDescription("Time callers spent waiting for a free connection, in total."))
	for _, err := range []error{err1, err2, err3, err4, err5, err6} {
		if err != nil {
			return fmt.Errorf("store: creating metrics: %w", err)
		}
	}
	sys := metric.WithAttributes(system)
	idle := metric.WithAttributes(system, attribute.String("db.client.connection.state", "idle"))
	used := metric.WithAttributes(system, attribute.String("db.client.connection.state", "used"))
	if _, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := s.db.Stats()
		o.ObserveInt64(retries, int64(s.retries.Load()), sys)
		o.ObserveInt64(conns, int64(st.Idle), idle)
		o.ObserveInt64(conns, int64(st.InUse), used)
		o.ObserveInt64(maxConns, int64(st.MaxOpenConnections), sys)
		o.ObserveInt64(waits, st.WaitCount, sys)
		o.ObserveFloat64(waitTime, st.WaitDuration.Seconds(), sys)
		return nil
	}, retries, conns, maxConns, waits, waitTime); err != nil {
		return fmt.Errorf("store: registering the metrics callback: %w", err)
	}
	s.metrics = &storeMetrics{
		txDuration: tx,
		committed:  metric.WithAttributes(system, attribute.String("tollgate.outcome", "committed")),
		rejected:   metric.WithAttributes(system, attribute.String("tollgate.outcome", "error")),
	}
	return nil
}

// txDone records a transaction that started at start and ended with err.
func (m *storeMetrics) txDone(ctx context.Context, start time.Time, err error) {
	if m == nil {
		return
	}
	opt := m.committed
	if err != nil {
		opt = m.rejected
	}
	m.txDuration.Record(context.WithoutCancel(ctx), time.Since(start).Seconds(), opt)
}
