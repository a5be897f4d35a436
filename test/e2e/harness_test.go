// Package e2e runs Tollgate's whole path on every CI run: client SDK →
// data plane → ext_proc → fake provider → usage in the store, with the
// control plane configuring it all over xDS. The data plane is the test data
// plane in envoy/testdataplane, or real Envoy when TOLLGATE_E2E_ENVOY=1 and
// ENVOY_BIN (or envoy on PATH) is set (`make e2e-envoy`). Every test runs
// once on SQLite and once on PostgreSQL.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/admin"
	"github.com/tollgate-dev/tollgate/controlplane/contentlog"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/quotaauthority"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/usageingest"
	"github.com/tollgate-dev/tollgate/controlplane/xds"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
	"github.com/tollgate-dev/tollgate/envoy"
	"github.com/tollgate-dev/tollgate/envoy/testdataplane"
	"github.com/tollgate-dev/tollgate/extproc"
	"github.com/tollgate-dev/tollgate/extproc/configclient"
	"github.com/tollgate-dev/tollgate/extproc/quota"
	"github.com/tollgate-dev/tollgate/extproc/usage"
	"github.com/tollgate-dev/tollgate/telemetry"
	"github.com/tollgate-dev/tollgate/test/fakeprovider"
	"github.com/tollgate-dev/tollgate/test/testport"
)

// gateway is one running Tollgate with fake providers behind it.
type gateway struct {
	t       *testing.T
	store   *store.Store
	admin   *grpc.ClientConn
	op      context.Context // authenticated as the operator
	traffic string          // http://host:port of the data plane
	fakes   map[fakeprovider.Kind]*fakeprovider.Server
	// providerIDs by fake kind, and the tenant's key.
	providerIDs map[fakeprovider.Kind]string
	key         string
	keyID       string
	logs        *lockedBuffer
	// maxRequestBytes is the data plane's buffer limit for a request body.
	maxRequestBytes uint32
	// publisher serves the data plane (node envoyNodeID) its configuration.
	publisher *xds.Publisher
	// xdsAddr is the control plane's xDS port (config, usage, quota), and
	// restartControlPlane stops what serves it and starts it again on the
	// same address and store.
	xdsAddr             string
	restartControlPlane func()
	// Telemetry, as `tollgate controlplane` and `tollgate extproc` export
	// it: each one's /metrics URL and providers (both send their traces to
	// the OTLP receiver).
	controlPlaneMetrics   string
	extprocMetrics        string
	controlPlaneTelemetry *telemetry.Telemetry
	extprocTelemetry      *telemetry.Telemetry
	otlp                  *otlpReceiver
}

type lockedBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func newLockedBuffer() *lockedBuffer { return &lockedBuffer{mu: make(chan struct{}, 1)} }

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.String()
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	return uint16(testport.Free(t))
}

func serveGRPC(t *testing.T, g *grpc.Server, l net.Listener) {
	t.Helper()
	go func() { _ = g.Serve(l) }() // returns when the test stops the server
	t.Cleanup(g.Stop)
}

// startGateway starts a control plane on st, ext_proc, fake providers and a
// data plane, and configures a tenant "acme" with one key and the models
// the tests use.
func startGateway(t *testing.T, st *store.Store) *gateway {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logs := newLockedBuffer()
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	g := &gateway{t: t, store: st, logs: logs, fakes: map[fakeprovider.Kind]*fakeprovider.Server{}, providerIDs: map[fakeprovider.Kind]string{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway logs:\n%s", logs)
		}
	})

	// Control plane: admin API and xDS (with usage ingestion), as
	// `tollgate controlplane` serves them.
	ring, err := keyring.New(keyring.Key{ID: "e2e", Secret: bytes.Repeat([]byte{42}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	op, err := secret.New(secret.OperatorToken)
	if err != nil {
		t.Fatal(err)
	}
	opts := xdstranslate.DefaultOptions()
	opts.ListenAddress, opts.ListenPort = "127.0.0.1", uint32(freePort(t))
	// Small enough that the oversized-body test sends little.
	opts.MaxRequestBytes = 256 << 10
	g.maxRequestBytes = opts.MaxRequestBytes
	g.otlp = startOTLPReceiver(t)
	cpTel, cpURL := startTelemetry(t, "tollgate-controlplane", g.otlp.addr)
	epTel, epURL := startTelemetry(t, "tollgate-extproc", g.otlp.addr)
	g.controlPlaneMetrics, g.extprocMetrics, g.controlPlaneTelemetry, g.extprocTelemetry = cpURL, epURL, cpTel, epTel
	if err := st.Instrument(cpTel.Meters()); err != nil {
		t.Fatal(err)
	}
	pub := xds.NewPublisher(log)
	g.publisher = pub
	if err := pub.Instrument(cpTel.Meters()); err != nil {
		t.Fatal(err)
	}
	rec := &xds.Reconciler{Store: st, Keyring: ring, Options: opts, Publisher: pub, Log: log, PollInterval: 100 * time.Millisecond, Tracers: cpTel.Tracers()}
	rec.Init()
	adm, err := admin.New(admin.Config{Store: st, Keyring: ring, OperatorToken: op.Plaintext, Logger: log, Changed: rec.Notify})
	if err != nil {
		t.Fatal(err)
	}
	adminSrv := grpc.NewServer(telemetry.GRPCServerTraces(cpTel.Tracers()), grpc.ChainUnaryInterceptor(adm.UnaryInterceptor()), grpc.ChainStreamInterceptor(adm.StreamInterceptor()))
	adm.Register(adminSrv)
	adminLis := listen(t)
	serveGRPC(t, adminSrv, adminLis)
	vault, err := contentlog.NewVault(ring)
	if err != nil {
		t.Fatal(err)
	}
	content := contentlog.NewWriter(vault, contentlog.DefaultMaxDays, log)
	newIngest := func() *usageingest.Server {
		in := usageingest.New(st, log).KeepContent(content)
		in.Tracers = cpTel.Tracers()
		return in
	}
	xdsSrv := grpc.NewServer()
	xds.Register(ctx, xdsSrv, pub)
	newIngest().Register(xdsSrv)
	quotaauthority.New(st, quotaauthority.Options{Logger: log}).Register(xdsSrv)
	xdsLis := listen(t)
	serveGRPC(t, xdsSrv, xdsLis)
	go rec.Run(ctx)
	g.xdsAddr = xdsLis.Addr().String()
	var xdsMu sync.Mutex
	g.restartControlPlane = func() {
		xdsMu.Lock()
		defer xdsMu.Unlock()
		xdsSrv.Stop()
		lis, err := net.Listen("tcp", g.xdsAddr)
		if err != nil {
			t.Fatalf("listening again on %s: %v", g.xdsAddr, err)
		}
		xdsSrv = grpc.NewServer()
		xds.Register(ctx, xdsSrv, pub)
		newIngest().Register(xdsSrv)
		quotaauthority.New(st, quotaauthority.Options{Logger: log}).Register(xdsSrv)
		serveGRPC(t, xdsSrv, lis)
	}

	// ext_proc beside the data plane, as `tollgate extproc` runs it.
	xconn, err := grpc.NewClient(xdsLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(configclient.MaxMessageBytes)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = xconn.Close() })
	cfg := configclient.New(xconn, "extproc-e2e", log)
	go cfg.Run(ctx)
	recorder, err := usage.New(usage.Config{Conn: xconn, SpillDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := recorder.Instrument(epTel.Meters()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		if err := recorder.Close(c); err != nil {
			t.Errorf("closing the usage recorder: %v", err)
		}
	})
	// Stop (the test's cleanup) waits for the handlers: a request that
	// ends then still records its usage before the recorder closes.
	epSrv := grpc.NewServer(grpc.WaitForHandlers(true))
	// ext_proc logs at debug level: a request's lines (admitted, tries,
	// finished) are part of what the tests check.
	epLog := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	extprocv3.RegisterExternalProcessorServer(epSrv, extproc.New(extproc.Options{Config: cfg, Usage: recorder, Quota: quota.New(quota.Options{}), Logger: epLog,
		Meters: epTel.Meters(), Tracers: epTel.Tracers()}))
	epLis := listen(t)
	serveGRPC(t, epSrv, epLis)

	// Fake providers.
	for _, k := range []fakeprovider.Kind{fakeprovider.OpenAI, fakeprovider.Anthropic, fakeprovider.Gemini, fakeprovider.AzureOpenAI} {
		s, err := fakeprovider.New(k, fakeprovider.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		g.fakes[k] = s
	}

	// The data plane, from the same bootstrap real Envoy uses.
	xh, xp := hostPort(t, xdsLis.Addr())
	eh, ep := hostPort(t, epLis.Addr())
	boot, err := envoy.Render(envoy.Params{NodeID: envoyNodeID, AdminPort: freePort(t), XDSHost: xh, XDSPort: xp, ExtProcHost: eh, ExtProcPort: ep})
	if err != nil {
		t.Fatal(err)
	}
	g.traffic = "http://" + net.JoinHostPort(opts.ListenAddress, strconv.Itoa(int(opts.ListenPort)))
	startDataPlane(ctx, t, boot, logs)

	// Configuration, through the admin API.
	conn, err := grpc.NewClient(adminLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	g.admin = conn
	g.op = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+op.Plaintext)
	g.configure()
	return g
}

// startTelemetry builds a process's providers (traces to otlpAddr when it
// is not empty, every one sampled) and serves its /metrics.
func startTelemetry(t *testing.T, service, otlpAddr string) (*telemetry.Telemetry, string) {
	t.Helper()
	tel, err := telemetry.New(t.Context(), telemetry.Options{Service: service, OTLPEndpoint: otlpAddr, OTLPInsecure: true, TraceSampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := telemetry.ServeMetrics("127.0.0.1:0", tel.Handler(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing %s's metrics server: %v", service, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(ctx) // the receiver may be gone already
	})
	return tel, "http://" + srv.Addr().String() + "/metrics"
}

func hostPort(t *testing.T, a net.Addr) (string, uint16) {
	t.Helper()
	h, p, err := net.SplitHostPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, uint16(n)
}

// startDataPlane runs real Envoy when asked (TOLLGATE_E2E_ENVOY=1), else the
// test data plane.
func startDataPlane(ctx context.Context, t *testing.T, boot []byte, logs io.Writer) {
	t.Helper()
	if os.Getenv("TOLLGATE_E2E_ENVOY") == "1" {
		bin := os.Getenv("ENVOY_BIN")
		if bin == "" {
			var err error
			if bin, err = exec.LookPath("envoy"); err != nil {
				t.Fatal("TOLLGATE_E2E_ENVOY=1 but no Envoy: set ENVOY_BIN or put envoy on PATH")
			}
		}
		path := filepath.Join(t.TempDir(), "bootstrap.yaml")
		if err := os.WriteFile(path, boot, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, bin, "-c", path, "--log-level", "warn", "--base-id", strconv.Itoa(int(freePort(t))))
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return
	}
	dp, err := testdataplane.New(ctx, testdataplane.Config{Bootstrap: boot, Logger: slog.New(slog.NewJSONHandler(logs, nil)), AccessLog: logs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if rs := dp.Rejections(); len(rs) > 0 {
			t.Errorf("the test data plane refused configuration the control plane sent: %v", rs)
		}
		_ = dp.Close()
	})
}

// e2eModels are the models configured for the tests: name → deployments as
// (fake kind, upstream model, priority).
type e2eDeployment struct {
	kind     fakeprovider.Kind
	upstream string
	priority int32
}

var e2eModels = map[string][]e2eDeployment{
	"gpt-4o-mini":            {{fakeprovider.OpenAI, "gpt-4o-mini", 0}},
	"text-embedding-3-small": {{fakeprovider.OpenAI, "text-embedding-3-small", 0}},
	"claude-sonnet-4-5":      {{fakeprovider.Anthropic, "claude-sonnet-4-5", 0}},
	"gemini-2.5-flash":       {{fakeprovider.Gemini, "gemini-2.5-flash", 0}},
	"azure-gpt-4o":           {{fakeprovider.AzureOpenAI, "gpt-4o", 0}},
	// Anthropic first, OpenAI when it fails.
	"fallback": {{fakeprovider.Anthropic, "claude-sonnet-4-5", 0}, {fakeprovider.OpenAI, "gpt-4o-mini", 1}},
}

// Prices: $1 in, $2 out, $0.5 cached per million tokens for every model.
const (
	inPrice     = 1_000_000
	outPrice    = 2_000_000
	cachedPrice = 500_000
)

func (g *gateway) configure() {
	t := g.t
	kinds := map[fakeprovider.Kind]adminv1.ProviderKind{
		fakeprovider.OpenAI: adminv1.ProviderKind_PROVIDER_KIND_OPENAI, fakeprovider.Anthropic: adminv1.ProviderKind_PROVIDER_KIND_ANTHROPIC,
		fakeprovider.Gemini: adminv1.ProviderKind_PROVIDER_KIND_GEMINI, fakeprovider.AzureOpenAI: adminv1.ProviderKind_PROVIDER_KIND_AZURE_OPENAI,
	}
	for k, s := range g.fakes {
		p := &adminv1.Provider{Name: "fake-" + strings.ReplaceAll(string(k), "_", "-"), Kind: kinds[k], BaseUrl: s.URL(), Credential: s.APIKey()}
		if k == fakeprovider.AzureOpenAI {
			p.ApiVersion = "2024-10-21"
		}
		resp, err := adminv1.NewProviderServiceClient(g.admin).CreateProvider(g.op, &adminv1.CreateProviderRequest{Provider: p})
		if err != nil {
			t.Fatal(err)
		}
		g.providerIDs[k] = resp.GetProvider().GetId()
	}
	for name, deps := range e2eModels {
		m := &adminv1.Model{Name: name, Pricing: &adminv1.Pricing{InputMicrosPerMtok: inPrice, OutputMicrosPerMtok: outPrice, CachedInputMicrosPerMtok: cachedPrice}}
		for _, d := range deps {
			m.Deployments = append(m.Deployments, &adminv1.Deployment{ProviderId: g.providerIDs[d.kind], UpstreamModel: d.upstream, Priority: d.priority})
		}
		if _, err := adminv1.NewModelServiceClient(g.admin).CreateModel(g.op, &adminv1.CreateModelRequest{Model: m}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := adminv1.NewTenantServiceClient(g.admin).CreateTenant(g.op, &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme"}}); err != nil {
		t.Fatal(err)
	}
	g.key, g.keyID = g.newKey("ci", nil)
	// Ready when the data plane routes and ext_proc knows the key and every
	// model.
	g.eventually(10*time.Second, "the gateway serves every model to the key", func() error {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, g.traffic+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+g.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /v1/models: %d %s", resp.StatusCode, body)
		}
		for name := range e2eModels {
			if !bytes.Contains(body, []byte(`"`+name+`"`)) {
				return fmt.Errorf("model %s not listed yet", name)
			}
		}
		return nil
	})
	// ext_proc learns the models over its own stream; Envoy's routes to
	// them arrive over ADS, and may come a moment later.
	g.eventually(10*time.Second, "the data plane runs the configuration with every model", func() error {
		if !g.publisher.Accepted(envoyNodeID) {
			return fmt.Errorf("node %s has not accepted version %s", envoyNodeID, g.publisher.Status().Version)
		}
		return nil
	})
}

// envoyNodeID is the data plane's node id.
const envoyNodeID = "envoy-e2e"

// newKey makes a key of acme; expire may be nil.
func (g *gateway) newKey(name string, mutate func(*adminv1.Key)) (secretText, id string) {
	g.t.Helper()
	k := &adminv1.Key{Name: name}
	if mutate != nil {
		mutate(k)
	}
	resp, err := adminv1.NewKeyServiceClient(g.admin).CreateKey(g.op, &adminv1.CreateKeyRequest{Tenant: "acme", Key: k})
	if err != nil {
		g.t.Fatal(err)
	}
	return resp.GetSecret(), resp.GetKey().GetId()
}

// eventually retries f until it succeeds or limit passes.
func (g *gateway) eventually(limit time.Duration, what string, f func() error) time.Duration {
	g.t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < limit {
		if err = f(); err == nil {
			return time.Since(start)
		}
		time.Sleep(25 * time.Millisecond)
	}
	g.t.Fatalf("%s: not within %v: %v", what, limit, err)
	return 0
}
