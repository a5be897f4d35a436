// Package telemetry sets up what a Tollgate process exports about itself:
// OpenTelemetry metrics, served in the Prometheus exposition format on an
// HTTP /metrics endpoint and optionally pushed over OTLP/gRPC, and
// OpenTelemetry traces exported over OTLP/gRPC with a configurable sampler.
//
// The packages that are instrumented (extproc, controlplane/xds,
// controlplane/store, ...) take a metric.MeterProvider and a
// trace.TracerProvider from here and never touch the OpenTelemetry globals:
// two servers in one process (`tollgate dev`, the tests) each get the
// providers they were given. docs/observability.md lists every metric.
//
// Why OpenTelemetry's SDK with its Prometheus exporter rather than
// prometheus/client_golang directly: the instruments are written once,
// against the OpenTelemetry API, under the names of the OpenTelemetry GenAI
// semantic conventions, and the same instruments reach Prometheus (pull)
// and an OTLP collector (push) without a second set of metrics or a bridge.
// The exporter still uses client_golang underneath, on a registry of our own
// (not the global one), which also carries the Go runtime and process
// collectors.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Options configure a process's telemetry. The zero value exports metrics
// for /metrics only and no traces.
type Options struct {
	// Service is the service.name of the process's resource, e.g.
	// "tollgate-extproc".
	Service string
	// Version is service.version.
	Version string
	// Instance is service.instance.id (the node id); empty for none.
	Instance string

	// OTLPEndpoint is the host:port of an OTLP/gRPC collector. Empty
	// exports no traces and pushes no metrics.
	OTLPEndpoint string
	// OTLPInsecure talks to the collector without TLS.
	OTLPInsecure bool
	// OTLPMetrics also pushes the metrics to the collector, every
	// OTLPMetricsInterval (default 60 s), beside /metrics.
	OTLPMetrics         bool
	OTLPMetricsInterval time.Duration
	// TraceSampleRatio is the share of new traces that are sampled, 0 to 1.
	// A request that arrives with a W3C traceparent follows its caller's
	// decision (parent-based sampling).
	TraceSampleRatio float64

	Logger *slog.Logger
}

// Validate reports options that cannot work.
func (o Options) Validate() error {
	if o.TraceSampleRatio < 0 || o.TraceSampleRatio > 1 {
		return fmt.Errorf("the trace sample ratio must be between 0 and 1, not %v", o.TraceSampleRatio)
	}
	if o.OTLPMetrics && o.OTLPEndpoint == "" {
		return errors.New("pushing metrics over OTLP needs an OTLP endpoint")
	}
	if o.OTLPMetricsInterval < 0 {
		return fmt.Errorf("the OTLP metrics interval must be positive, not %v", o.OTLPMetricsInterval)
	}
	return nil
}

// Telemetry holds a process's providers. Its methods are safe for
// concurrent use.
type Telemetry struct {
	meters   *sdkmetric.MeterProvider
	tracers  trace.TracerProvider
	sdkTrace *sdktrace.TracerProvider // nil when traces are off
	registry *prometheus.Registry
	log      *slog.Logger
}

// New builds the providers o describes. Call Shutdown when the process
// stops, to flush what is buffered.
func New(ctx context.Context, o Options) (*Telemetry, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	res, err := newResource(o)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("telemetry: registering the Go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("telemetry: registering the process collector: %w", err)
	}
	exporter, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		// Prometheus-style names whatever the process's name validation
		// scheme: gen_ai.client.token.usage → gen_ai_client_token_usage,
		// seconds get _seconds, counters _total.
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		// Every series would otherwise carry otel_scope_* labels naming
		// the Go package that made it.
		otelprom.WithoutScopeInfo(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: the Prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(exporter)}
	if o.OTLPMetrics {
		mexp, err := otlpmetricgrpc.New(ctx, metricExporterOptions(o)...)
		if err != nil {
			return nil, fmt.Errorf("telemetry: the OTLP metric exporter: %w", err)
		}
		interval := o.OTLPMetricsInterval
		if interval == 0 {
			interval = time.Minute
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(interval))))
	}
	t := &Telemetry{meters: sdkmetric.NewMeterProvider(mopts...), tracers: tracenoop.NewTracerProvider(), registry: reg, log: log}
	if o.OTLPEndpoint != "" {
		texp, err := otlptracegrpc.New(ctx, traceExporterOptions(o)...)
		if err != nil {
			_ = t.meters.Shutdown(ctx) // the exporter's error is the one to report
			return nil, fmt.Errorf("telemetry: the OTLP trace exporter: %w", err)
		}
		t.sdkTrace = sdktrace.NewTracerProvider(
			sdktrace.WithResource(res),
			sdktrace.WithBatcher(texp),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.TraceSampleRatio))),
		)
		t.tracers = t.sdkTrace
	}
	return t, nil
}

func newResource(o Options) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{semconv.ServiceName(o.Service), semconv.ServiceVersion(o.Version)}
	if o.Instance != "" {
		attrs = append(attrs, semconv.ServiceInstanceID(o.Instance))
	}
	// Default carries the SDK's attributes and OTEL_RESOURCE_ATTRIBUTES.
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL, attrs...))
	if err != nil {
		return nil, fmt.Errorf("telemetry: building the resource: %w", err)
	}
	return res, nil
}

func traceExporterOptions(o Options) []otlptracegrpc.Option {
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(o.OTLPEndpoint)}
	if o.OTLPInsecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	return opts
}

func metricExporterOptions(o Options) []otlpmetricgrpc.Option {
	opts := []otlpmetricgrpc.Option{otlpmetricgrpc.WithEndpoint(o.OTLPEndpoint)}
	if o.OTLPInsecure {
		opts = append(opts, otlpmetricgrpc.WithInsecure())
	}
	return opts
}

// Meters is the process's meter provider.
func (t *Telemetry) Meters() metric.MeterProvider { return t.meters }

// Tracers is the process's tracer provider: a no-op one when traces are not
// exported, so that instrumented code costs next to nothing then.
func (t *Telemetry) Tracers() trace.TracerProvider { return t.tracers }

// Propagator reads and writes W3C trace context (traceparent, tracestate).
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// Handler serves the metrics in the Prometheus exposition format.
func (t *Telemetry) Handler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{
		ErrorLog:      slogPrinter{t.log},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// Gather returns the current metrics, as a scrape would; for tests.
func (t *Telemetry) Gather() (Families, error) {
	mfs, err := t.registry.Gather()
	return Families(mfs), err
}

// ForceFlush exports the spans and pushed metrics buffered so far, within
// ctx, without waiting for the next batch.
func (t *Telemetry) ForceFlush(ctx context.Context) error {
	var errs []error
	if t.sdkTrace != nil {
		errs = append(errs, t.sdkTrace.ForceFlush(ctx))
	}
	errs = append(errs, t.meters.ForceFlush(ctx))
	return errors.Join(errs...)
}

// Shutdown flushes and stops the exporters, within ctx.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.sdkTrace != nil {
		if err := t.sdkTrace.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: flushing traces: %w", err))
		}
	}
	if err := t.meters.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("telemetry: flushing metrics: %w", err))
	}
	return errors.Join(errs...)
}

// slogPrinter adapts a slog.Logger to promhttp's error log.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Error("serving metrics", "err", fmt.Sprint(v...)) }
