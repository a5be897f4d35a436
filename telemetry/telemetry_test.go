package telemetry

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
)

// OpenTelemetry names reach Prometheus in its own style: dots become
// underscores, seconds get _seconds, counters _total, and a unit in braces
// ({token}) adds nothing. The dashboard and docs/observability.md use these.
func TestPrometheusNamesOfOpenTelemetryInstruments(t *testing.T) {
	tel, err := New(t.Context(), Options{Service: "tollgate-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	m := tel.Meters().Meter("test")
	tokens, _ := m.Int64Histogram("gen_ai.client.token.usage", metric.WithUnit("{token}"))
	dur, _ := m.Float64Histogram("gen_ai.client.operation.duration", metric.WithUnit("s"))
	rejected, _ := m.Int64Counter("tollgate.extproc.rejections", metric.WithUnit("{request}"))
	attrs := metric.WithAttributes(attribute.String("gen_ai.provider.name", "openai"))
	tokens.Record(t.Context(), 12, attrs)
	dur.Record(t.Context(), 0.25, attrs)
	rejected.Add(t.Context(), 1, attrs)

	srv, err := ServeMetrics("127.0.0.1:0", tel.Handler(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	}()
	resp, err := http.Get("http://" + srv.Addr().String() + "/metrics") //nolint:noctx // loopback test
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	fams, err := ParseExposition(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"gen_ai_client_token_usage":                1,
		"gen_ai_client_operation_duration_seconds": 1,
		"tollgate_extproc_rejections_total":        1,
	} {
		if got, ok := fams.Sum(name, "gen_ai_provider_name", "openai"); !ok || got != want {
			t.Errorf("%s{gen_ai_provider_name=openai} = %v (found %v), want %v; exposition:\n%s", name, got, ok, want, body)
		}
	}
	if got, _ := fams.HistogramSum("gen_ai_client_token_usage"); got != 12 {
		t.Errorf("token usage sum = %v, want 12", got)
	}
	if strings.Contains(string(body), "otel_scope_name") {
		t.Error("series carry otel_scope_name labels; the exporter should leave scope info out")
	}
	names := fams.SeriesNames()
	for _, n := range []string{"gen_ai_client_token_usage_bucket", "gen_ai_client_operation_duration_seconds_count", "go_goroutines", "target_info"} {
		if !names[n] {
			t.Errorf("no series %s", n)
		}
	}
}

func TestOptionsThatCannotWork(t *testing.T) {
	for _, o := range []Options{
		{TraceSampleRatio: -0.1},
		{TraceSampleRatio: 1.01},
		{OTLPMetrics: true},
	} {
		if _, err := New(t.Context(), o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

// With an OTLP endpoint traces are recorded (and exported, in the
// background); without one the tracer provider is a no-op.
func TestTracesOnlyWithAnEndpoint(t *testing.T) {
	off, err := New(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, span := off.Tracers().Tracer("t").Start(t.Context(), "x")
	if span.IsRecording() {
		t.Error("a span is recorded without an OTLP endpoint")
	}
	span.End()

	on, err := New(t.Context(), Options{OTLPEndpoint: "127.0.0.1:1", OTLPInsecure: true, TraceSampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, span = on.Tracers().Tracer("t").Start(t.Context(), "x")
	if !span.IsRecording() {
		t.Error("a span is not recorded with an OTLP endpoint and ratio 1")
	}
	span.End()
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // nothing listens there: do not wait for the export
	_ = on.Shutdown(ctx)
}

// metricsReceiver is an in-process OTLP/gRPC metrics collector.
type metricsReceiver struct {
	collectormetrics.UnimplementedMetricsServiceServer
	mu    sync.Mutex
	names map[string]bool
}

func (r *metricsReceiver) Export(_ context.Context, req *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				r.names[m.GetName()] = true
			}
		}
	}
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

// With --otlp-metrics the same instruments are pushed to the collector,
// under their OpenTelemetry names, beside /metrics.
func TestMetricsArePushedOverOTLP(t *testing.T) {
	r := &metricsReceiver{names: map[string]bool{}}
	g := grpc.NewServer()
	collectormetrics.RegisterMetricsServiceServer(g, r)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	tel, err := New(t.Context(), Options{Service: "otlp-test", OTLPEndpoint: lis.Addr().String(), OTLPInsecure: true, OTLPMetrics: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	c, _ := tel.Meters().Meter("test").Int64Counter("tollgate.extproc.rejections")
	c.Add(t.Context(), 1)
	if err := tel.ForceFlush(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.names["tollgate.extproc.rejections"] {
		t.Errorf("the collector received %v, not the counter", r.names)
	}
}
