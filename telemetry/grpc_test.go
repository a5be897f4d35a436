package telemetry

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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
