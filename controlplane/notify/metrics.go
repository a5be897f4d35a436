package notify

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// deliveryMetrics are the Deliverer's instruments; nil until Instrument.
type deliveryMetrics struct {
	attempts metric.Int64Counter
	duration metric.Float64Histogram
}

// Instrument exports the Deliverer's metrics to mp: delivery attempts by
// event type, channel (webhook, email) and outcome (delivered, retry,
// failed, dead), and how long attempts take. Tenants are not labels (their
// number is unbounded); the delivery log has them. Call it once, before Run.
func (d *Deliverer) Instrument(mp metric.MeterProvider) error {
	m := mp.Meter("github.com/tollgate-dev/tollgate/controlplane/notify")
	attempts, err1 := m.Int64Counter("tollgate.notification.attempts", metric.WithUnit("{attempt}"),
		metric.WithDescription("Notification delivery attempts, by event type, channel (webhook, email) and outcome (delivered, retry, failed, dead)."))
	duration, err2 := m.Float64Histogram("tollgate.notification.attempt.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of notification delivery attempts, by channel."),
		metric.WithExplicitBucketBoundaries(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	for _, err := range []error{err1, err2} {
		if err != nil {
			return fmt.Errorf("notify: creating metrics: %w", err)
		}
	}
	d.metrics = &deliveryMetrics{attempts: attempts, duration: duration}
	return nil
}

func (m *deliveryMetrics) attempted(ctx context.Context, typ, channel, outcome string, took time.Duration) {
	if m == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	m.attempts.Add(ctx, 1, metric.WithAttributes(attribute.String("tollgate.notification.type", typ),
		attribute.String("tollgate.notification.channel", channel), attribute.String("tollgate.outcome", outcome)))
	m.duration.Record(ctx, took.Seconds(), metric.WithAttributes(attribute.String("tollgate.notification.channel", channel)))
}
