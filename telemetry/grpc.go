package telemetry

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	codepb "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// GRPCServerTraces returns the option that gives each call a gRPC server
// answers a server span in tp (OpenTelemetry's RPC conventions, through
// otelgrpc's stats handler): named for the method, with rpc.system.name,
// rpc.method and rpc.response.status_code (and server.address and
// server.port, the server's own). A caller's W3C trace context in the call's
// metadata (traceparent, tracestate) makes the span its child, so a client
// that traces joins the server's spans to its own; the sampler follows the
// caller's decision (parent-based, as for ext_proc's requests).
//
// The spans carry no request or response field and no metadata value: only
// the method, the status code and, for the codes the server is to blame for
// (INTERNAL, UNAVAILABLE, ...), the status message, which the admin API
// keeps free of data. Health checks and reflection get no span: probes
// would otherwise start a trace every few seconds. otelgrpc's own metrics
// are off (GRPCServerMetrics counts the calls, once).
func GRPCServerTraces(tp trace.TracerProvider) grpc.ServerOption {
	return grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithPropagators(Propagator()),
		otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool { return traced(info.FullMethodName) }),
	))
}

// untracedServices are the services whose calls get no span.
var untracedServices = []string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

func traced(fullMethod string) bool {
	for _, p := range untracedServices {
		if strings.HasPrefix(fullMethod, p) {
			return false
		}
	}
	return true
}

// GRPCServerMetrics returns interceptors that record each call a gRPC
// server answers as rpc.server.call.duration (OpenTelemetry's RPC
// conventions: rpc.system.name, rpc.method, rpc.response.status_code, and
// error.type when the call failed). Only registered methods reach
// interceptors, so rpc.method is a bounded set. Meant for servers of short
// calls, such as the admin API: a stream's duration is its whole life.
func GRPCServerMetrics(mp metric.MeterProvider) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor, error) {
	m := mp.Meter("github.com/tollgate-dev/tollgate/telemetry")
	dur, err := m.Float64Histogram("rpc.server.call.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of each gRPC call the server answered, by method and status code."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: creating the gRPC server metrics: %w", err)
	}
	record := func(ctx context.Context, fullMethod string, start time.Time, err error) {
		// The canonical names (NOT_FOUND), as the conventions ask, not
		// grpc-go's (NotFound).
		code := codepb.Code(status.Code(err)).String()
		attrs := []attribute.KeyValue{
			attribute.String("rpc.system.name", "grpc"),
			attribute.String("rpc.method", strings.TrimPrefix(fullMethod, "/")),
			attribute.String("rpc.response.status_code", code),
		}
		if err != nil {
			attrs = append(attrs, attribute.String("error.type", code))
		}
		// The caller's context may be cancelled already; the measurement
		// must still count.
		dur.Record(context.WithoutCancel(ctx), time.Since(start).Seconds(), metric.WithAttributes(attrs...))
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		record(ctx, info.FullMethod, start, err)
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		record(ss.Context(), info.FullMethod, start, err)
		return err
	}
	return unary, stream, nil
}

// GRPCClientTraceContext returns dial options that send the W3C trace
// context of each call's context (traceparent, tracestate) in the call's
// metadata, so that a server with GRPCServerTraces makes the caller's span
// the parent of its own. They start no span: for a client in the same
// process as its server (the web console's admin calls), a client span
// would only repeat the server's.
func GRPCClientTraceContext() []grpc.DialOption {
	prop := Propagator()
	inject := func(ctx context.Context) context.Context {
		if !trace.SpanContextFromContext(ctx).IsValid() {
			return ctx
		}
		md, _ := metadata.FromOutgoingContext(ctx)
		md = md.Copy()
		prop.Inject(ctx, metadataCarrier(md))
		return metadata.NewOutgoingContext(ctx, md)
	}
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(inject(ctx), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(inject(ctx), desc, cc, method, opts...)
		}),
	}
}

// metadataCarrier writes a propagator's fields into gRPC metadata,
// replacing any value the caller had set.
type metadataCarrier metadata.MD

func (c metadataCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c metadataCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
