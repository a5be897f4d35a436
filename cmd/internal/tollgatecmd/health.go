package tollgatecmd

import (
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthAddrUsage is the help of --health-addr, the same for every server.
const healthAddrUsage = "also serve the gRPC health service, alone and in plaintext, on this address (for Kubernetes gRPC probes, which cannot speak TLS or reach a loopback port); empty: off"

// serveHealth serves hs alone, in plaintext, on addr until the returned
// server stops. The kubelet's gRPC probes cannot speak TLS and reach the
// pod's IP, while the admin port requires TLS beyond loopback and ext_proc
// listens on loopback; this port tells only the serving status.
func serveHealth(addr string, hs *health.Server, errc chan<- error) (*grpc.Server, net.Addr, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listening for health checks: %w", err)
	}
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	go func() {
		if err := g.Serve(lis); err != nil {
			errc <- fmt.Errorf("serving health checks: %w", err)
		}
	}()
	return g, lis.Addr(), nil
}
