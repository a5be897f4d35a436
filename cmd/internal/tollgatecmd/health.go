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

// listenHealth listens for health checks on addr (--health-addr). The
// kubelet's gRPC probes cannot speak TLS and reach the pod's IP, while the
// admin port requires TLS beyond loopback and ext_proc listens on loopback:
// this port tells nothing but the serving status.
func listenHealth(addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for health checks: %w", err)
	}
	return lis, nil
}

// serveHealth serves hs alone on lis until the returned server stops; a
// failure to serve goes to errc.
func serveHealth(lis net.Listener, hs *health.Server, errc chan<- error) *grpc.Server {
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	go func() {
		if err := g.Serve(lis); err != nil {
			errc <- fmt.Errorf("serving health checks: %w", err)
		}
	}()
	return g
}
