package telemetry

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	codepb "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

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
