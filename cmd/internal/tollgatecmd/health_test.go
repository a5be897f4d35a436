package tollgatecmd

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/test/testport"
)

// The Helm chart's gRPC probes reach --health-addr: the control plane's
// says SERVING once it serves; ext_proc's says SERVING only after its
// first config sync. The port serves nothing but health.
func TestHealthAddrAnswersProbes(t *testing.T) {
	cpHealth := "127.0.0.1:" + strconv.Itoa(testport.Free(t))
	d := startDevWith(t, t.TempDir(), "--health-addr", cpHealth)
	cp := healthConn(t, cpHealth)
	waitServing(t, cp, "control plane")
	_, err := adminv1.NewTenantServiceClient(cp).ListTenants(t.Context(), &adminv1.ListTenantsRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("admin call on the health port: %v, want Unimplemented", err)
	}

	epHealth := "127.0.0.1:" + strconv.Itoa(testport.Free(t))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	stderr := &syncBuffer{}
	go func() {
		done <- Main(ctx, []string{"extproc", "--listen", "127.0.0.1:0", "--xds-addr", d.xds,
			"--health-addr", epHealth, "--spill-dir", t.TempDir()}, nil, stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("tollgate extproc exited %d:\n%s", code, stderr)
		}
	})
	waitServing(t, healthConn(t, epHealth), "ext_proc")
}

func healthConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() }) // the test is over; a failed close loses nothing
	return conn
}

func waitServing(t *testing.T, conn *grpc.ClientConn, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		hc, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
		if err == nil && hc.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's health port not SERVING after 20s: %v %v", what, hc, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A health port that cannot be bound stops the control plane at start-up
// with the reason, rather than leaving it running without its probes.
func TestHealthAddrInUseIsAnError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Close() }() // the test is over; nothing to lose
	var out, errb bytes.Buffer
	code := Main(t.Context(), []string{"dev", "--data-dir", t.TempDir(), "--admin-addr", "127.0.0.1:0", "--xds-addr", "127.0.0.1:0",
		"--extproc-listen", "127.0.0.1:0", "--dataplane", "none", "--metrics-addr", "", "--health-addr", busy.Addr().String()}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "listening for health checks") {
		t.Errorf("exit %d, stderr %q; want a failure to listen for health checks", code, errb.String())
	}
}
