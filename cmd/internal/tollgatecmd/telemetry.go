package tollgatecmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate-dev/tollgate/telemetry"
)

// telemetryFlags configure what a process exports about itself
// (docs/observability.md).
type telemetryFlags struct {
	metricsAddr      string
	otlpEndpoint     string
	otlpInsecure     bool
	otlpMetrics      bool
	traceSampleRatio float64
	tenantLabels     bool
}

func (f *telemetryFlags) register(fs *flag.FlagSet, defaultMetrics string) {
	fs.StringVar(&f.metricsAddr, "metrics-addr", defaultMetrics, "host:port serving Prometheus metrics at /metrics over plain HTTP; empty serves none")
	fs.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "host:port of an OTLP/gRPC collector to export traces to (and metrics, with --otlp-metrics); empty exports none")
	fs.BoolVar(&f.otlpInsecure, "otlp-insecure", false, "talk to the OTLP collector without TLS")
	fs.BoolVar(&f.otlpMetrics, "otlp-metrics", false, "also push metrics to the OTLP collector every minute")
	fs.Func("trace-sample-ratio", "share of requests without a sampled traceparent whose traces are exported, 0 to 1 (default 0.1); a caller's sampled traceparent is always followed", func(v string) error {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 0 || r > 1 {
			return fmt.Errorf("%q is not a ratio between 0 and 1", v)
		}
		f.traceSampleRatio = r
		return nil
	})
	f.traceSampleRatio = 0.1
	fs.BoolVar(&f.tenantLabels, "metrics-tenant-labels", false, "label request metrics with the tenant id: one series per tenant, model and provider, so only with few tenants (docs/observability.md)")
}

// runningTelemetry is a process's providers and its /metrics server.
type runningTelemetry struct {
	tel     *telemetry.Telemetry
	metrics *telemetry.MetricsServer // nil when --metrics-addr is empty
	log     *slog.Logger
}

// startTelemetry builds the providers f describes and serves /metrics.
func startTelemetry(ctx context.Context, f telemetryFlags, service, instance string, log *slog.Logger) (*runningTelemetry, error) {
	if f.otlpMetrics && f.otlpEndpoint == "" {
		return nil, fmt.Errorf("%w: --otlp-metrics needs --otlp-endpoint", errUsage)
	}
	tel, err := telemetry.New(ctx, telemetry.Options{
		Service: service, Version: Version, Instance: instance,
		OTLPEndpoint: f.otlpEndpoint, OTLPInsecure: f.otlpInsecure, OTLPMetrics: f.otlpMetrics,
		TraceSampleRatio: f.traceSampleRatio, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	rt := &runningTelemetry{tel: tel, log: log}
	if f.metricsAddr != "" {
		rt.metrics, err = telemetry.ServeMetrics(f.metricsAddr, tel.Handler(), log)
		if err != nil {
			_ = tel.Shutdown(ctx) // the listen error is the one to report
			return nil, err
		}
		log.Info("metrics listening", "addr", "http://"+rt.metrics.Addr().String()+"/metrics")
	}
	if f.otlpEndpoint != "" {
		log.Info("exporting traces over OTLP", "endpoint", f.otlpEndpoint, "sample_ratio", f.traceSampleRatio, "metrics", f.otlpMetrics)
	}
	return rt, nil
}

// meters is rt's meter provider; nil without telemetry.
func (rt *runningTelemetry) meters() metric.MeterProvider {
	if rt == nil {
		return nil
	}
	return rt.tel.Meters()
}

// tracers is rt's tracer provider; nil without telemetry.
func (rt *runningTelemetry) tracers() trace.TracerProvider {
	if rt == nil {
		return nil
	}
	return rt.tel.Tracers()
}

// metricsURL is where /metrics is served, or "" when it is not.
func (rt *runningTelemetry) metricsURL() string {
	if rt == nil || rt.metrics == nil {
		return ""
	}
	return "http://" + rt.metrics.Addr().String() + "/metrics"
}

// stop closes the /metrics server and flushes the exporters.
func (rt *runningTelemetry) stop(ctx context.Context) error {
	var errs []error
	if rt.metrics != nil {
		errs = append(errs, rt.metrics.Close())
	}
	errs = append(errs, rt.tel.Shutdown(ctx))
	return errors.Join(errs...)
}

// stopTelemetry stops rt as a command returns, adding a failure to flush
// to the command's error (*err).
func stopTelemetry(rt *runningTelemetry, err *error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serr := rt.stop(ctx); serr != nil {
		*err = errors.Join(*err, serr)
	}
}
