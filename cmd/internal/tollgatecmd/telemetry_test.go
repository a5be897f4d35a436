package tollgatecmd

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/telemetry"
)

// runUntilCancelled runs tollgate with args until the test ends, and fails
// the test if it exits with an error.
func runUntilCancelled(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- Main(ctx, args, &syncBuffer{}, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("tollgate %s exited %d; stderr:\n%s", args[0], code, stderr)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("tollgate %s did not stop within 60s of its context ending", args[0])
		}
	})
	return stderr
}

// scrape GETs url until it answers 200 (the server may still be starting)
// and parses the exposition.
func scrape(t *testing.T, url string, logs *syncBuffer) telemetry.Families {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url) //nolint:noctx // a test against loopback, bounded by the deadline
		if err == nil {
			if resp.StatusCode != http.StatusOK {
				_ = resp.Body.Close()
				t.Fatalf("GET %s: %s", url, resp.Status)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("GET %s: Content-Type %q, want the Prometheus text format", url, ct)
			}
			fams, err := telemetry.ParseExposition(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v after 30s; logs:\n%s", url, err, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitForLog waits until logs hold text.
func waitForLog(t *testing.T, logs *syncBuffer, text string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the logs after 30s:\n%s", text, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serviceOf is the service.name the exposition's target_info names.
func serviceOf(fams telemetry.Families) []string {
	return fams.LabelValues("target_info", "service_name")
}

func TestExtProcServesMetrics(t *testing.T) {
	addr := "127.0.0.1:" + freePort(t)
	logs := runUntilCancelled(t, "extproc", "--listen", "127.0.0.1:0", "--xds-addr", "127.0.0.1:"+freePort(t),
		"--spill-dir", t.TempDir(), "--metrics-addr", addr, "--node-id", "extproc-metrics-test")
	fams := scrape(t, "http://"+addr+"/metrics", logs)
	if got := serviceOf(fams); len(got) != 1 || got[0] != "tollgate-extproc" {
		t.Errorf("target_info service_name = %v, want [tollgate-extproc]", got)
	}
	if got := fams.LabelValues("target_info", "service_instance_id"); len(got) != 1 || got[0] != "extproc-metrics-test" {
		t.Errorf("target_info service_instance_id = %v, want the node id", got)
	}
	if _, ok := fams.Sum("go_goroutines"); !ok {
		t.Error("no go_goroutines: the Go runtime collector is not registered")
	}
}

func TestControlPlaneServesMetrics(t *testing.T) {
	dir := t.TempDir()
	if _, err := keyring.LoadOrGenerate(filepath.Join(dir, "master.key")); err != nil {
		t.Fatal(err)
	}
	tok, err := secret.New(secret.OperatorToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(tok.Plaintext), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, adminAddr := "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
	logs := runUntilCancelled(t, "controlplane", "--database", "sqlite://"+filepath.Join(dir, "t.db"),
		"--master-key-file", filepath.Join(dir, "master.key"), "--operator-token-file", filepath.Join(dir, "token"),
		"--admin-addr", adminAddr, "--xds-addr", "127.0.0.1:0", "--metrics-addr", addr, "--web-addr", "")
	waitForLog(t, logs, "admin API listening")
	fams := scrape(t, "http://"+addr+"/metrics", logs)
	if got := serviceOf(fams); len(got) != 1 || got[0] != "tollgate-controlplane" {
		t.Errorf("target_info service_name = %v, want [tollgate-controlplane]", got)
	}
	if _, ok := fams.Sum("process_resident_memory_bytes"); !ok {
		t.Error("no process_resident_memory_bytes: the process collector is not registered")
	}
	// The store and the xDS server are instrumented: the reconciler
	// publishes soon after start (in the background, so wait for it).
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n, _ := fams.Sum("tollgate_xds_reconcile_duration_seconds", "tollgate_outcome", "published"); n >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconciliation in the metrics after 30s; logs:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
		fams = scrape(t, "http://"+addr+"/metrics", logs)
	}
	if _, ok := fams.Sum("db_client_connection_count", "db_system_name", "sqlite", "db_client_connection_state", "idle"); !ok {
		t.Error("no db_client_connection_count: the store is not instrumented")
	}

	// The admin API counts the calls it answers, refused ones too.
	conn, err := grpc.NewClient(adminAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := adminv1.NewTenantServiceClient(conn).ListTenants(t.Context(), &adminv1.ListTenantsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("listing tenants without a token: %v, want Unauthenticated", err)
	}
	fams = scrape(t, "http://"+addr+"/metrics", logs)
	if n, _ := fams.Sum("rpc_server_call_duration_seconds", "rpc_method", "tollgate.admin.v1.TenantService/ListTenants",
		"rpc_response_status_code", "UNAUTHENTICATED"); n != 1 {
		t.Errorf("admin API calls refused for want of a token = %v, want 1", n)
	}
}

// `tollgate dev` serves one /metrics for the processes it runs and prints
// where; with an empty --metrics-addr it serves none and says so.
func TestDevServesMetricsWhereTheBannerSays(t *testing.T) {
	d := startDevWith(t, t.TempDir())
	if !strings.HasPrefix(d.metrics, "http://127.0.0.1:") {
		t.Fatalf("banner metrics line %q; banner:\n%s", d.metrics, d.banner)
	}
	fams := scrape(t, d.metrics, d.logs)
	if got := serviceOf(fams); len(got) != 1 || got[0] != "tollgate-dev" {
		t.Errorf("target_info service_name = %v, want [tollgate-dev]", got)
	}

	off := startDevWith(t, t.TempDir(), "--metrics-addr", "")
	if !strings.Contains(off.banner, "metrics         none") {
		t.Errorf("with --metrics-addr \"\" the banner should say no metrics are served:\n%s", off.banner)
	}
}
