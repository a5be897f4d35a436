package telemetry

import (
	"context"
	"net"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
)

// Each call the server answers is one observation, labelled with its
// method and status code (and error.type when it failed).
func TestGRPCServerMetrics(t *testing.T) {
	tel, err := New(t.Context(), Options{Service: "tollgate-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	unary, stream, err := GRPCServerMetrics(tel.Meters())
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
	hs := health.NewServer()
	hs.SetServingStatus("known", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	c := healthpb.NewHealthClient(conn)
	for range 2 {
		if _, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "known"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "unknown"}); err == nil {
		t.Fatal("checking an unknown service succeeded")
	}

	fams, err := tel.Gather()
	if err != nil {
		t.Fatal(err)
	}
	const name = "rpc_server_call_duration_seconds"
	method := []string{"rpc_system_name", "grpc", "rpc_method", "grpc.health.v1.Health/Check"}
	if n, ok := fams.Sum(name, append(method, "rpc_response_status_code", "OK")...); !ok || n != 2 {
		t.Errorf("OK calls = %v (found %v), want 2", n, ok)
	}
	if n, ok := fams.Sum(name, append(method, "rpc_response_status_code", "NOT_FOUND", "error_type", "NOT_FOUND")...); !ok || n != 1 {
		t.Errorf("NOT_FOUND calls = %v (found %v), want 1 with error.type", n, ok)
	}
	if n, _ := fams.Sum(name); n != 3 {
		t.Errorf("%v calls in all, want 3", n)
	}
}

type emptyService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (emptyService) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

// A call gets a server span that continues the caller's trace from its
// traceparent metadata; health checks get none; and the call is counted in
// rpc.server.call.duration once, by GRPCServerMetrics alone.
func TestGRPCServerTraces(t *testing.T) {
	tel, err := New(t.Context(), Options{Service: "tollgate-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	unary, stream, err := GRPCServerMetrics(tel.Meters())
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(GRPCServerTraces(tp), grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
	testgrpc.RegisterTestServiceServer(g, emptyService{})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()

	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", "00-"+traceID+"-"+parentID+"-01")
	if _, err := testgrpc.NewTestServiceClient(conn).EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	// Without a traceparent the sampler (never, for new traces) decides.
	if _, err := testgrpc.NewTestServiceClient(conn).EmptyCall(t.Context(), &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}

	ended := spans.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans, want the sampled call's only", len(ended))
	}
	s := ended[0]
	if s.Name() != "grpc.testing.TestService/EmptyCall" || s.SpanKind() != oteltrace.SpanKindServer {
		t.Errorf("span %q of kind %v, want a server span named for the method", s.Name(), s.SpanKind())
	}
	if got := s.SpanContext().TraceID().String(); got != traceID {
		t.Errorf("trace id %s, want the caller's %s", got, traceID)
	}
	if got := s.Parent().SpanID().String(); got != parentID || !s.Parent().IsRemote() {
		t.Errorf("parent %s (remote %v), want the caller's span %s", got, s.Parent().IsRemote(), parentID)
	}
	attrs := map[string]string{}
	for _, a := range s.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	for k, v := range map[string]string{"rpc.system.name": "grpc", "rpc.method": "grpc.testing.TestService/EmptyCall", "rpc.response.status_code": "OK"} {
		if attrs[k] != v {
			t.Errorf("attribute %s = %q, want %q (all: %v)", k, attrs[k], v, attrs)
		}
	}

	fams, err := tel.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := fams.Sum("rpc_server_call_duration_seconds", "rpc_method", "grpc.testing.TestService/EmptyCall"); n != 2 {
		t.Errorf("%v observations of the two calls, want 2: traces must not count calls again", n)
	}
}

type metadataEcho struct {
	testgrpc.UnimplementedTestServiceServer
	got chan metadata.MD
}

func (e metadataEcho) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	e.got <- md
	return &testgrpc.Empty{}, nil
}

// A client with GRPCClientTraceContext sends its context's span, so the
// server's span is its child; it keeps the call's other metadata, replaces
// a traceparent the context already carried, and starts no span itself.
func TestGRPCClientTraceContext(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	echo := metadataEcho{got: make(chan metadata.MD, 1)}
	g := grpc.NewServer(GRPCServerTraces(tp))
	testgrpc.RegisterTestServiceServer(g, echo)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), append(GRPCClientTraceContext(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()

	ctx, parent := tp.Tracer("test").Start(t.Context(), "console request")
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer s3cret", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if _, err := testgrpc.NewTestServiceClient(conn).EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	parent.End()
	md := <-echo.got
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer s3cret" {
		t.Errorf("authorization %q, want the caller's", got)
	}
	if got := md.Get("traceparent"); len(got) != 1 {
		t.Errorf("traceparent %q, want one value", got)
	}

	ended := spans.Ended()
	if len(ended) != 2 {
		t.Fatalf("%d spans, want the caller's and the server's", len(ended))
	}
	server := ended[0]
	if server.SpanKind() != oteltrace.SpanKindServer {
		t.Fatalf("first span %q is a %v span, want the server's", server.Name(), server.SpanKind())
	}
	pc := parent.SpanContext()
	if server.SpanContext().TraceID() != pc.TraceID() || server.Parent().SpanID() != pc.SpanID() {
		t.Errorf("server span in trace %s under %s, want the caller's %s under %s",
			server.SpanContext().TraceID(), server.Parent().SpanID(), pc.TraceID(), pc.SpanID())
	}
}
