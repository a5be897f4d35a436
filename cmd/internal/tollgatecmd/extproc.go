package tollgatecmd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	quotav1 "github.com/tollgate-dev/tollgate/api/tollgate/quota/v1"
	"github.com/tollgate-dev/tollgate/extproc"
	"github.com/tollgate-dev/tollgate/extproc/configclient"
	"github.com/tollgate-dev/tollgate/extproc/quota"
	"github.com/tollgate-dev/tollgate/extproc/quotalease"
	"github.com/tollgate-dev/tollgate/extproc/tokencount"
	usagequeue "github.com/tollgate-dev/tollgate/extproc/usage"
)

// extprocFlags configure an ext_proc server.
type extprocFlags struct {
	listen   string // host:port or unix:/path
	xdsAddr  string
	nodeID   string
	spillDir string
	health   string // host:port of the plaintext health service, or ""
	tlsCert  string
	tlsKey   string
	tlsCA    string
	logLevel slog.Level

	quotaLedger   string // "lease" or "local"
	rateFail      string // "open" or "closed"
	leaseRequests int64
	// contentCapture bounds each body captured for tenants that keep content.
	contentCapture int

	telemetry telemetryFlags
}

func (f *extprocFlags) register(fs *flag.FlagSet, defaultListen, defaultXDS, defaultSpill string) {
	host, _ := os.Hostname()
	fs.StringVar(&f.listen, "listen", defaultListen, "where Envoy reaches ext_proc: host:port, or unix:/path/to.sock")
	fs.StringVar(&f.xdsAddr, "xds-addr", defaultXDS, "the control plane's xDS address (config in, usage out)")
	fs.StringVar(&f.nodeID, "node-id", "extproc-"+host, "this ext_proc's node id at the control plane")
	fs.StringVar(&f.health, "health-addr", "", healthAddrUsage)
	fs.StringVar(&f.spillDir, "spill-dir", defaultSpill, "directory for usage records that could not be delivered yet")
	fs.StringVar(&f.tlsCert, "xds-tls-cert", "", "client certificate for mutual TLS to the control plane")
	fs.StringVar(&f.tlsKey, "xds-tls-key", "", "client key for mutual TLS to the control plane")
	fs.StringVar(&f.tlsCA, "xds-tls-ca", "", "CA of the control plane's certificate")
	fs.TextVar(&f.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	fs.StringVar(&f.quotaLedger, "quota-ledger", "lease", "where limits and budgets are counted: lease (the control plane is the quota authority, shared by every replica) or local (this process only)")
	fs.StringVar(&f.rateFail, "rate-limits-fail", "open", "rate and concurrency limits while the quota authority is unreachable: open (this replica's share, limit/N, counted locally) or closed (refused); budgets always fail closed")
	fs.Int64Var(&f.leaseRequests, "quota-lease-requests", 8, "a quota lease's size, in requests of the size that asks for it (docs/policy.md: the accuracy bound)")
	fs.IntVar(&f.contentCapture, "content-capture-bytes", extproc.DefaultContentCaptureBytes, "for tenants whose policy keeps request content (retention full): the most of each request and response body captured (docs/privacy.md)")
	f.telemetry.register(fs, "127.0.0.1:9465")
}

func runExtProc(ctx context.Context, args []string, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("tollgate extproc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f extprocFlags
	f.register(fs, "127.0.0.1:7072", "127.0.0.1:7071", "/var/lib/tollgate/spill")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log := newLogger(stderr, f.logLevel)
	tel, err := startTelemetry(ctx, f.telemetry, "tollgate-extproc", f.nodeID, log)
	if err != nil {
		return err
	}
	defer stopTelemetry(tel, &err)
	return serveExtProc(ctx, f, tel, log, nil)
}

// serveExtProc runs an ext_proc server until ctx ends: its config client and
// usage recorder talk to the control plane; Envoy talks to it. It exports
// its metrics and traces through tel.
func serveExtProc(ctx context.Context, f extprocFlags, tel *runningTelemetry, log *slog.Logger, ready func(net.Addr)) error {
	if f.contentCapture < 1 || f.contentCapture > extproc.MaxContentCaptureBytes {
		return fmt.Errorf("%w: --content-capture-bytes must be between 1 and %d, got %d", errUsage, extproc.MaxContentCaptureBytes, f.contentCapture)
	}
	creds, err := xdsClientCreds(f)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(f.xdsAddr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(configclient.MaxMessageBytes)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}))
	if err != nil {
		return fmt.Errorf("connecting to the control plane: %w", err)
	}
	defer func() { _ = conn.Close() }() // nothing is left to flush on a closed connection

	// Load the tokenizer's encodings now rather than inside the first
	// request that needs an estimate (about 0.2 s and 22 MB, once).
	go func() {
		if err := tokencount.Warm(); err != nil {
			log.Warn("loading the tokenizer; usage estimates will load it on first use", "err", err)
		}
	}()
	cfg := configclient.New(conn, f.nodeID, log)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go cfg.Run(runCtx)

	rec, err := newUsageRecorder(conn, f, log)
	if err != nil {
		return err
	}
	meters := tel.tel.Meters()
	if err := rec.Instrument(meters); err != nil {
		return err
	}
	ledger, err := newQuotaLedger(conn, f, log)
	if err != nil {
		return err
	}
	var q *quota.Engine
	if ledger == nil {
		q = quota.New(quota.Options{})
	} else {
		go ledger.Run(runCtx)
		q = quota.New(quota.Options{Ledger: ledger})
		if err := ledger.Instrument(meters); err != nil {
			return err
		}
	}
	srv := extproc.New(extproc.Options{Config: cfg, Usage: rec, Quota: q, Logger: log,
		Meters: meters, Tracers: tel.tel.Tracers(), TenantLabels: f.telemetry.tenantLabels,
		ContentCaptureBytes: f.contentCapture})
	go srv.Maintain(runCtx, 30*time.Second)

	lis, err := listenExtProc(f.listen)
	if err != nil {
		return err
	}
	// Envoy keeps one HTTP/2 connection and a stream per request.
	g := grpc.NewServer(grpc.MaxConcurrentStreams(1<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// When the graceful stop runs out of time, Stop cancels the
		// remaining streams; it must also wait for their handlers, which
		// then record those requests' usage, before the recorder is
		// flushed and closed below. Otherwise a long stream cut at
		// shutdown would lose its usage record.
		grpc.WaitForHandlers(true))
	extprocv3.RegisterExternalProcessorServer(g, srv)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	// Not serving until the first full config sync: Envoy's requests would
	// all be refused as "starting".
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	go func() {
		select {
		case <-cfg.Ready():
			hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			log.Info("ext_proc has its configuration", "counts", fmt.Sprint(cfg.Counts()))
		case <-runCtx.Done():
		}
	}()
	errc := make(chan error, 2)
	if f.health != "" {
		hlis, err := listenHealth(f.health)
		if err != nil {
			_ = lis.Close() // nothing was served on it; the health listener's error is the one to report
			return err
		}
		hg := serveHealth(hlis, hs, errc)
		defer hg.Stop() // health checks are unary and instant: nothing to drain
		log.Info("health checks listening", "addr", hlis.Addr().String())
	}
	go func() {
		if err := g.Serve(lis); err != nil {
			errc <- fmt.Errorf("serving ext_proc: %w", err)
		}
	}()
	log.Info("ext_proc listening", "addr", lis.Addr().String(), "xds", f.xdsAddr)
	if ready != nil {
		ready(lis.Addr())
	}
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	hs.Shutdown()
	stopGracefully(g)
	// Every request has ended: flush their usage before leaving.
	flushCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rec.Close(flushCtx); err != nil {
		serveErr = errors.Join(serveErr, fmt.Errorf("flushing usage records: %w", err))
	}
	if ledger != nil {
		// Unused quota goes back to the authority for the other replicas.
		leaseCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := ledger.Close(leaseCtx); err != nil {
			log.Warn("quota leases not all returned; the authority reclaims them when they expire", "err", err)
		}
		cancel()
	}
	stop()
	return serveErr
}

// newQuotaLedger returns the lease ledger on conn, or nil for the local one.
func newQuotaLedger(conn grpc.ClientConnInterface, f extprocFlags, log *slog.Logger) (*quotalease.Ledger, error) {
	switch f.quotaLedger {
	case "local":
		log.Warn("limits and budgets are counted per ext_proc process (--quota-ledger=local): N replicas admit up to N times each limit")
		return nil, nil
	case "lease", "":
	default:
		return nil, fmt.Errorf("%w: --quota-ledger must be lease or local, not %q", errUsage, f.quotaLedger)
	}
	if f.rateFail != "" && f.rateFail != "open" && f.rateFail != "closed" {
		return nil, fmt.Errorf("%w: --rate-limits-fail must be open or closed, not %q", errUsage, f.rateFail)
	}
	if f.leaseRequests < 0 {
		return nil, fmt.Errorf("%w: --quota-lease-requests must be at least 1", errUsage)
	}
	return quotalease.New(quotalease.Options{
		Client:        quotav1.NewQuotaServiceClient(conn),
		Replica:       f.nodeID + "/" + uuid.NewString()[:8],
		LeaseRequests: f.leaseRequests,
		RateFailOpen:  f.rateFail != "closed",
		Logger:        log,
	}), nil
}

func listenExtProc(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		// A socket left by a previous run would make Listen fail.
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("removing the old ext_proc socket: %w", err)
		}
		lis, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("listening for Envoy: %w", err)
		}
		return lis, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for Envoy: %w", err)
	}
	return lis, nil
}

func xdsClientCreds(f extprocFlags) (credentials.TransportCredentials, error) {
	if f.tlsCert == "" && f.tlsKey == "" && f.tlsCA == "" {
		return insecure.NewCredentials(), nil
	}
	if f.tlsCert == "" || f.tlsKey == "" || f.tlsCA == "" {
		return nil, fmt.Errorf("%w: mutual TLS to the control plane needs --xds-tls-cert, --xds-tls-key and --xds-tls-ca", errUsage)
	}
	cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("loading the xDS client certificate: %w", err)
	}
	pem, err := os.ReadFile(f.tlsCA)
	if err != nil {
		return nil, fmt.Errorf("reading the xDS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", errUsage, f.tlsCA)
	}
	return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}), nil
}

// newUsageRecorder starts delivering usage records to the control plane
// over conn, spilling to f.spillDir while it cannot.
func newUsageRecorder(conn grpc.ClientConnInterface, f extprocFlags, log *slog.Logger) (*usagequeue.Recorder, error) {
	if err := os.MkdirAll(f.spillDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the usage spill directory: %w", err)
	}
	rec, err := usagequeue.New(usagequeue.Config{Conn: conn, SpillDir: f.spillDir, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("starting the usage recorder: %w", err)
	}
	return rec, nil
}
