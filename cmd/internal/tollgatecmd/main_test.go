package tollgatecmd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/extproc/configclient"
)

// startDev runs `tollgate dev` in-process until the test ends and returns
// the admin API address it printed.
func startDev(t *testing.T, dir string) (addr string, logs *syncBuffer) {
	t.Helper()
	d := startDevWith(t, dir)
	return d.admin, d.logs
}

// startDevXDS is startDev that also returns the xDS address.
func startDevXDS(t *testing.T, dir string) (addr, xdsAddr string, logs *syncBuffer) {
	t.Helper()
	d := startDevWith(t, dir)
	return d.admin, d.xds, d.logs
}

// startDevAll is startDev that returns every address the banner prints.
func startDevAll(t *testing.T, dir string) (addr, xdsAddr, extprocAddr string, logs *syncBuffer) {
	t.Helper()
	d := startDevWith(t, dir)
	return d.admin, d.xds, d.extproc, d.logs
}

// devAddrs is what a `tollgate dev` banner says.
type devAddrs struct {
	admin, xds, extproc, traffic string
	metrics                      string // the /metrics URL
	banner                       string
	logs                         *syncBuffer
}

// startDevWith runs `tollgate dev` with free ports and no data plane unless
// args say otherwise, until the test ends.
func startDevWith(t *testing.T, dir string, args ...string) devAddrs {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	stderr := &syncBuffer{}
	all := append([]string{"dev", "--data-dir", dir, "--admin-addr", "127.0.0.1:0", "--xds-addr", "127.0.0.1:0", "--extproc-listen", "127.0.0.1:0", "--dataplane", "none", "--metrics-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0"}, args...)
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, all, pw, stderr)
		_ = pw.Close() // closing an io.PipeWriter always succeeds
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("tollgate dev exited %d; stderr:\n%s", code, stderr)
			}
		case <-time.After(60 * time.Second):
			t.Error("tollgate dev did not stop within 60s of its context ending")
		}
	})
	found := make(chan devAddrs, 1)
	go func() {
		re := map[string]*regexp.Regexp{
			"admin": regexp.MustCompile(`^\s+admin API\s+(\S+)`), "xds": regexp.MustCompile(`^\s+xDS\s+(\S+)`),
			"extproc": regexp.MustCompile(`^\s+ext_proc\s+(\S+)`), "traffic": regexp.MustCompile(`^\s+traffic\s+http://(\S+)`),
			"metrics": regexp.MustCompile(`^\s+metrics\s+(http://\S+)`),
		}
		sc := bufio.NewScanner(pr)
		var d devAddrs
		var banner strings.Builder
		for sc.Scan() {
			line := sc.Text()
			banner.WriteString(line + "\n")
			for k, r := range re {
				if m := r.FindStringSubmatch(line); m != nil {
					switch k {
					case "admin":
						d.admin = m[1]
					case "xds":
						d.xds = m[1]
					case "extproc":
						d.extproc = m[1]
					case "traffic":
						d.traffic = m[1]
					case "metrics":
						d.metrics = m[1]
					}
				}
			}
			if strings.HasPrefix(line, "Stop with Ctrl-C") {
				d.banner = banner.String()
				found <- d
			}
		}
		// Drain the rest so that Main never blocks writing stdout.
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case d := <-found:
		d.logs = stderr
		return d
	case code := <-done:
		t.Fatalf("tollgate dev exited %d before serving; stderr:\n%s", code, stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("tollgate dev printed no banner in 60s; stderr:\n%s", stderr)
	}
	return devAddrs{}
}

// syncBuffer is a bytes.Buffer safe for the writes of several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

func TestDevGeneratesSecretsOnceAndServesTheAdminAPI(t *testing.T) {
	dir := t.TempDir()
	addr, logs := startDev(t, dir)
	tokenBytes, err := os.ReadFile(filepath.Join(dir, "operator-token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tokenBytes))
	if err := secret.Check(secret.OperatorToken, token); err != nil {
		t.Fatalf("operator token file: %v", err)
	}
	for _, f := range []string{"operator-token", "master.key"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("closing the client connection: %v", err)
		}
	})
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token)
	hc, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hc, err)
	}
	if _, err := adminv1.NewTenantServiceClient(conn).CreateTenant(ctx, &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme"}}); err != nil {
		t.Fatal(err)
	}
	key, err := adminv1.NewKeyServiceClient(conn).CreateKey(ctx, &adminv1.CreateKeyRequest{Tenant: "acme", Key: &adminv1.Key{Name: "ci"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), key.GetSecret()) || strings.Contains(logs.String(), token) {
		t.Error("the log holds a secret")
	}
	if !strings.Contains(logs.String(), `"msg":"admin call"`) {
		t.Errorf("admin calls are not logged as JSON:\n%s", logs)
	}
}

func TestDevKeepsItsDataAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	read := func() (token, key []byte) {
		token, _ = os.ReadFile(filepath.Join(dir, "operator-token"))
		key, _ = os.ReadFile(filepath.Join(dir, "master.key"))
		return token, key
	}
	t.Run("first start", func(t *testing.T) { startDev(t, dir) })
	token1, key1 := read()
	t.Run("second start", func(t *testing.T) { startDev(t, dir) })
	token2, key2 := read()
	if len(token1) == 0 || !bytes.Equal(token1, token2) || len(key1) == 0 || !bytes.Equal(key1, key2) {
		t.Error("a restart replaced the operator token or the master key")
	}
	if _, err := os.Stat(filepath.Join(dir, "tollgate.db")); err != nil {
		t.Errorf("no SQLite database in the data directory: %v", err)
	}
}

func TestMigrateIsRepeatable(t *testing.T) {
	dsn := "sqlite://" + filepath.Join(t.TempDir(), "t.db")
	for i := range 2 {
		var out, errb bytes.Buffer
		if code := Main(t.Context(), []string{"migrate", "--database", dsn}, &out, &errb); code != 0 {
			t.Fatalf("migrate run %d exited %d: %s", i+1, code, errb.String())
		}
		if !strings.Contains(out.String(), "schema is up to date") {
			t.Errorf("migrate printed %q", out.String())
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, v := range []string{"TOLLGATE_DATABASE", "TOLLGATE_MASTER_KEY", "TOLLGATE_MASTER_KEY_FILE"} {
		t.Setenv(v, "") // restores the variable after the test
		if err := os.Unsetenv(v); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "Usage:"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"migrate"}, 2, "--database"},
		{[]string{"controlplane"}, 2, "--database"},
		{[]string{"dev", "--no-such-flag"}, 2, "no-such-flag"},
		{[]string{"controlplane", "--database", "sqlite:///tmp/x.db"}, 2, "master key"},
		{[]string{"migrate", "--database", "mysql://x"}, 1, "sqlite"},
		{[]string{"extproc", "--trace-sample-ratio", "1.5"}, 2, "between 0 and 1"},
		{[]string{"extproc", "--otlp-metrics", "--metrics-addr", ""}, 2, "--otlp-endpoint"},
	} {
		var out, errb bytes.Buffer
		code := Main(t.Context(), c.args, &out, &errb)
		if code != c.code || !strings.Contains(errb.String(), c.want) {
			t.Errorf("tollgate %v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, errb.String(), c.code, c.want)
		}
	}
}

func TestAdminAPIRefusesPlaintextBeyondLoopback(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := Main(t.Context(), []string{"dev", "--data-dir", dir, "--admin-addr", "0.0.0.0:0", "--xds-addr", "127.0.0.1:0", "--extproc-listen", "127.0.0.1:0", "--dataplane", "none", "--metrics-addr", "", "--web-addr", ""}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "without TLS") {
		t.Errorf("exit %d, stderr %q; want a refusal to serve without TLS", code, errb.String())
	}
}

func TestXDSRefusesPlaintextBeyondLoopback(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main(t.Context(), []string{"dev", "--data-dir", t.TempDir(), "--admin-addr", "127.0.0.1:0", "--xds-addr", "0.0.0.0:0", "--metrics-addr", "", "--web-addr", ""}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "without mutual TLS") {
		t.Errorf("exit %d, stderr %q; want a refusal to serve xDS without mutual TLS", code, errb.String())
	}
}

// tollgate dev serves xDS: an ext_proc config client gets a full sync.
func TestDevServesXDS(t *testing.T) {
	_, xdsAddr, _ := startDevXDS(t, t.TempDir())
	conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("closing the client connection: %v", err)
		}
	})
	client := configclient.New(conn, "extproc-test", slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go client.Run(ctx)
	select {
	case <-client.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("no full config sync from tollgate dev's xDS server within 5s")
	}
}

func TestEnvoyBootstrapCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(t.Context(), []string{"envoy-bootstrap", "--node-id", "edge-7", "--extproc", "unix:/run/tollgate/extproc.sock"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{`id: "edge-7"`, `pipe: { path: "/run/tollgate/extproc.sock" }`, `port_value: 7071`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("bootstrap lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "listen_port") {
		t.Errorf("a bootstrap without --listen-port asks for a port of its own:\n%s", out.String())
	}
	out.Reset()
	if code := Main(t.Context(), []string{"envoy-bootstrap", "--node-id", "edge-8", "--listen-port", "10008"}, &out, &errb); code != 0 {
		t.Fatalf("--listen-port: exit %d: %s", code, errb.String())
	}
	if want := "tollgate: { listen_port: 10008 }"; !strings.Contains(out.String(), want) {
		t.Errorf("bootstrap lacks %q:\n%s", want, out.String())
	}
	for _, bad := range [][]string{{"--xds-addr", "nohost"}, {"--listen-port", "65536"}, {"--listen-port", "9901"}, {"--listen-port", "-1"}} {
		errb.Reset()
		if code := Main(t.Context(), append([]string{"envoy-bootstrap"}, bad...), &out, &errb); code != 2 {
			t.Errorf("envoy-bootstrap %v: exit %d, want 2 (%s)", bad, code, errb.String())
		}
	}
}
