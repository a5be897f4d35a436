package tollgatecmd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/tollgate-dev/tollgate/controlplane/admin"
	"github.com/tollgate-dev/tollgate/controlplane/contentlog"
	"github.com/tollgate-dev/tollgate/controlplane/jobs"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/privacy"
	"github.com/tollgate-dev/tollgate/controlplane/quotaauthority"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/signin"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/usageingest"
	"github.com/tollgate-dev/tollgate/controlplane/xds"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
	"github.com/tollgate-dev/tollgate/telemetry"
)

// serverFlags are the flags of every command that serves the control plane.
type serverFlags struct {
	adminAddr     string
	adminInsecure bool
	tlsCert       string
	tlsKey        string
	xdsAddr       string
	xdsInsecure   bool
	xdsClientCA   string
	healthAddr    string
	noMigrate     bool
	logLevel      slog.Level
	// maxContentDays caps every policy's content_retention_days.
	maxContentDays int
	// invoiceRetentionDays is how long invoices of erased tenants are kept.
	invoiceRetentionDays int
	dataPlane            xdstranslate.Options
	telemetry            telemetryFlags
	notify               notifyFlags
	web                  webFlags
	billing              billingFlags
}

func (f *serverFlags) register(fs *flag.FlagSet, defaultAdmin, defaultXDS, defaultListen string) {
	f.dataPlane = xdstranslate.DefaultOptions()
	f.dataPlane.ListenAddress = defaultListen
	fs.StringVar(&f.adminAddr, "admin-addr", defaultAdmin, "address of the admin gRPC API")
	fs.StringVar(&f.xdsAddr, "xds-addr", defaultXDS, "address of the xDS server (Envoy and ext_proc connect here)")
	fs.BoolVar(&f.xdsInsecure, "xds-insecure", false, "serve xDS without mutual TLS on a non-loopback address; it carries provider credentials, so only behind a network you trust")
	fs.StringVar(&f.xdsClientCA, "xds-client-ca", "", "PEM CA that signs xDS client certificates; enables mutual TLS on the xDS port (with --tls-cert and --tls-key)")
	fs.StringVar(&f.dataPlane.ListenAddress, "listen-address", defaultListen, "IP address Envoy accepts client traffic on")
	fs.Func("listen-port", "port Envoy accepts client traffic on (default 10000)", func(v string) error { return parseUint32(v, &f.dataPlane.ListenPort) })
	fs.DurationVar(&f.dataPlane.RouteTimeout, "route-timeout", f.dataPlane.RouteTimeout, "longest a request may take, streams and retries included")
	fs.DurationVar(&f.dataPlane.MessageTimeout, "extproc-message-timeout", f.dataPlane.MessageTimeout, "how long Envoy waits for each ext_proc reply")
	fs.StringVar(&f.dataPlane.TrustedCAFile, "upstream-ca-file", "", "PEM CA bundle Envoy trusts for providers instead of the system store")
	fs.BoolVar(&f.adminInsecure, "admin-insecure", false, "serve the admin API without TLS on a non-loopback address (only behind a network you trust, e.g. a service mesh)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate for the admin API")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key for the admin API")
	fs.StringVar(&f.healthAddr, "health-addr", "", healthAddrUsage)
	fs.BoolVar(&f.noMigrate, "no-migrate", false, "do not create or upgrade the database schema at start-up (run `tollgate migrate` instead)")
	fs.TextVar(&f.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	f.telemetry.register(fs, "127.0.0.1:9464")
	f.web.register(fs, "127.0.0.1:7080")
	fs.IntVar(&f.invoiceRetentionDays, "invoice-retention-days", int(privacy.DefaultInvoiceRetention/(24*time.Hour)), "how long an erased tenant's invoices are kept (blanked) after their period ends: your legal retention period for invoices")
	fs.IntVar(&f.maxContentDays, "max-content-days", contentlog.DefaultMaxDays, "the longest any tenant's request content is kept (caps each policy's content_retention_days; docs/privacy.md)")
	f.notify.register(fs)
	f.billing.register(fs)
}

func runControlPlane(ctx context.Context, args []string, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("tollgate controlplane", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		sf            serverFlags
		dsn           string
		masterKeyFile string
		tokenFile     string
	)
	sf.register(fs, ":7070", ":7071", "0.0.0.0")
	fs.StringVar(&dsn, "database", os.Getenv("TOLLGATE_DATABASE"), "database DSN: postgres://…, cockroachdb://… or sqlite:///path (env TOLLGATE_DATABASE)")
	fs.StringVar(&masterKeyFile, "master-key-file", os.Getenv("TOLLGATE_MASTER_KEY_FILE"), "file of master keys that encrypt provider credentials (or env TOLLGATE_MASTER_KEY with the keys themselves)")
	fs.StringVar(&tokenFile, "operator-token-file", os.Getenv("TOLLGATE_OPERATOR_TOKEN_FILE"), "file holding the operator token (or env TOLLGATE_OPERATOR_TOKEN)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if dsn == "" {
		return fmt.Errorf("%w: --database (or TOLLGATE_DATABASE) is required", errUsage)
	}
	log := newLogger(stderr, sf.logLevel)
	ring, err := loadKeyring(masterKeyFile)
	if err != nil {
		return err
	}
	token, err := loadOperatorToken(tokenFile)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	tel, err := startTelemetry(ctx, sf.telemetry, "tollgate-controlplane", "", log)
	if err != nil {
		return err
	}
	defer stopTelemetry(tel, &err)
	return serve(ctx, serveConfig{flags: sf, store: st, keyring: ring, operatorToken: token, log: log, telemetry: tel})
}

func loadKeyring(file string) (*keyring.Keyring, error) {
	if file != "" {
		return keyring.Load(file)
	}
	ring, ok, err := keyring.FromEnv("TOLLGATE_MASTER_KEY")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: no master key: set --master-key-file or TOLLGATE_MASTER_KEY", errUsage)
	}
	return ring, nil
}

func loadOperatorToken(file string) (string, error) {
	token := os.Getenv("TOLLGATE_OPERATOR_TOKEN")
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading the operator token: %w", err)
		}
		token = string(b)
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", fmt.Errorf("%w: no operator token: set --operator-token-file or TOLLGATE_OPERATOR_TOKEN", errUsage)
	}
	if err := secret.Check(secret.OperatorToken, token); err != nil {
		return "", fmt.Errorf("the operator token: %w", err)
	}
	return token, nil
}

type serveConfig struct {
	flags         serverFlags
	store         *store.Store
	keyring       *keyring.Keyring
	operatorToken string
	log           *slog.Logger
	telemetry     *runningTelemetry
	// ready, if set, receives the addresses once they accept calls.
	ready func(adminAddr, xdsAddr net.Addr)
	// webReady, if set, receives the console's URL ("" without one).
	webReady func(url string)
}

// serve runs the control plane until ctx is done.
func serve(ctx context.Context, cfg serveConfig) error {
	if !cfg.flags.noMigrate {
		start := time.Now()
		if err := cfg.store.Migrate(ctx); err != nil {
			return err
		}
		cfg.log.Info("database schema is up to date", "dialect", cfg.store.Dialect(), "duration_ms", time.Since(start).Milliseconds())
	}
	publisher := xds.NewPublisher(cfg.log)
	if cfg.telemetry != nil {
		mp := cfg.telemetry.tel.Meters()
		if err := cfg.store.Instrument(mp); err != nil {
			return err
		}
		if err := publisher.Instrument(mp); err != nil {
			return err
		}
	}
	rec := &xds.Reconciler{Store: cfg.store, Keyring: cfg.keyring, Options: cfg.flags.dataPlane, Publisher: publisher, Log: cfg.log}
	if cfg.telemetry != nil {
		rec.Tracers = cfg.telemetry.tel.Tracers()
	}
	rec.Init()
	sessions, err := signin.New(cfg.store, signin.Options{OperatorToken: cfg.operatorToken, Logger: cfg.log})
	if err != nil {
		return err
	}
	bill, err := cfg.flags.billing.service(cfg.store, cfg.log)
	if err != nil {
		return err
	}
	adm, err := admin.New(admin.Config{
		Store: cfg.store, Keyring: cfg.keyring, OperatorToken: cfg.operatorToken, Logger: cfg.log,
		Changed: rec.Notify, Sessions: sessions, Billing: bill,
		ConfigStatus: func() admin.ConfigStatus {
			st := publisher.Status()
			out := admin.ConfigStatus{Version: st.Version, PublishTime: st.PublishTime, Errors: st.Errors, Nodes: st.Nodes, Resources: st.Resources}
			for _, ns := range st.NodeStates {
				out.NodeStates = append(out.NodeStates, admin.NodeConfigState{
					Node: ns.Node, Envoy: ns.Envoy, Connected: ns.Connected, Current: ns.Current,
					Accepted: ns.Accepted, Rejections: ns.Rejections, ListenPort: ns.ListenPort,
				})
			}
			return out
		},
	})
	if err != nil {
		return err
	}
	if err := cfg.flags.dataPlane.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if cfg.flags.invoiceRetentionDays < 1 {
		return fmt.Errorf("%w: --invoice-retention-days must be positive, got %d", errUsage, cfg.flags.invoiceRetentionDays)
	}
	if cfg.flags.maxContentDays < 1 || cfg.flags.maxContentDays > 3660 {
		return fmt.Errorf("%w: --max-content-days must be between 1 and 3660, got %d", errUsage, cfg.flags.maxContentDays)
	}
	notifier, err := cfg.flags.notify.deliverer(cfg.store, cfg.keyring, cfg.log)
	if err != nil {
		return err
	}
	if cfg.telemetry != nil {
		if err := notifier.Instrument(cfg.telemetry.tel.Meters()); err != nil {
			return err
		}
	}
	opts, err := adminServerOptions(adm, cfg.telemetry.meters(), cfg.telemetry.tracers())
	if err != nil {
		return err
	}
	creds, err := adminTLS(cfg.flags)
	if err != nil {
		return err
	}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	lis, err := net.Listen("tcp", cfg.flags.adminAddr)
	if err != nil {
		return fmt.Errorf("listening for the admin API: %w", err)
	}
	if creds == nil && !cfg.flags.adminInsecure && !isLoopbackAddr(lis.Addr()) {
		_ = lis.Close() // nothing was served on it; the refusal is the error
		return fmt.Errorf("%w: refusing to serve the admin API without TLS on %s: tokens would cross the network in clear text; give --tls-cert and --tls-key, bind to 127.0.0.1, or pass --admin-insecure behind a network you trust", errUsage, lis.Addr())
	}
	var hlis net.Listener
	if cfg.flags.healthAddr != "" {
		if hlis, err = listenHealth(cfg.flags.healthAddr); err != nil {
			_ = lis.Close() // nothing was served on it; the health listener's error is the one to report
			return err
		}
	}
	authority := quotaauthority.New(cfg.store, quotaauthority.Options{Logger: cfg.log})
	xg, xlis, err := xdsServer(ctx, cfg, publisher, authority)
	if err != nil {
		_ = lis.Close() // nothing was served on them; the xDS error is the one to report
		if hlis != nil {
			_ = hlis.Close()
		}
		return err
	}
	g := grpc.NewServer(opts...)
	adm.Register(g)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	reflection.Register(g)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	recDone := make(chan struct{})
	go func() { rec.Run(runCtx); close(recDone) }()
	vault, err := contentlog.NewVault(cfg.keyring)
	if err != nil {
		return err
	}
	runner := jobs.New(cfg.store, replicaName(), cfg.log)
	if cfg.telemetry != nil {
		runner.Tracers = cfg.telemetry.tel.Tracers()
	}
	purger := privacy.NewPurger(cfg.store, vault, cfg.log)
	purger.InvoiceRetention = time.Duration(cfg.flags.invoiceRetentionDays) * 24 * time.Hour
	deps := jobDeps{store: cfg.store, authority: authority, notifier: notifier, purger: purger, billing: bill, sessions: sessions,
		rollups: usageingest.New(cfg.store, cfg.log)}
	for _, j := range backgroundJobs(deps) {
		runner.Add(j)
	}
	jobsDone := make(chan struct{})
	go func() { _ = runner.Run(runCtx); close(jobsDone) }()
	console, err := startWeb(runCtx, cfg, adm, sessions)
	if err != nil {
		stopRun()
		<-recDone
		<-jobsDone
		_ = lis.Close()  // nothing was served on it; the console's error is the one to report
		_ = xlis.Close() // likewise
		if hlis != nil {
			_ = hlis.Close()
		}
		return err
	}
	errc := make(chan error, 4)
	if console != nil {
		go func() { errc <- <-console.errc }()
	}
	var hg *grpc.Server
	if hlis != nil {
		hg = serveHealth(hlis, hs, errc)
		cfg.log.Info("health checks listening", "addr", hlis.Addr().String())
	}
	go func() { errc <- fmt.Errorf("serving the admin API: %w", g.Serve(lis)) }()
	go func() { errc <- fmt.Errorf("serving xDS: %w", xg.Serve(xlis)) }()
	cfg.log.Info("admin API listening", "addr", lis.Addr().String(), "tls", creds != nil)
	cfg.log.Info("xDS listening", "addr", xlis.Addr().String())
	if cfg.webReady != nil {
		cfg.webReady(console.URL()) // before ready: dev prints both once ready fires
	}
	if cfg.ready != nil {
		cfg.ready(lis.Addr(), xlis.Addr())
	}
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	hs.Shutdown()
	stopRun()
	console.stop()
	<-recDone  // it logs to the caller's writer: done before serve returns
	<-jobsDone // likewise; a job in progress stops at its context
	stopGracefully(g)
	stopGracefully(xg)
	if hg != nil {
		hg.Stop() // health checks are unary and instant: nothing to drain
	}
	cfg.log.Info("control plane stopped")
	return serveErr
}

// adminServerOptions are the options of an admin API server, the network
// one or the console's in-process one: the admin interceptors and, with
// telemetry (mp not nil), each call counted in rpc.server.call.duration and
// a server span in tp.
func adminServerOptions(adm *admin.Server, mp metric.MeterProvider, tp trace.TracerProvider) ([]grpc.ServerOption, error) {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(adm.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(adm.StreamInterceptor()),
	}
	if mp == nil {
		return opts, nil
	}
	// Outermost, so that calls refused by authentication count too.
	unary, stream, err := telemetry.GRPCServerMetrics(mp)
	if err != nil {
		return nil, err
	}
	return append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream),
		telemetry.GRPCServerTraces(tp)}, opts...), nil
}

// stopGracefully lets calls in flight finish, for at most 10 seconds; xDS
// streams never finish on their own, so they are cut after that.
func stopGracefully(g *grpc.Server) {
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		g.Stop()
	}
}

// xdsServer listens for Envoy and ext_proc. The xDS stream carries provider
// credentials in clear text, so beyond loopback it requires mutual TLS (or
// an explicit --xds-insecure).
func xdsServer(ctx context.Context, cfg serveConfig, p *xds.Publisher, authority *quotaauthority.Authority) (*grpc.Server, net.Listener, error) {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(16 << 20),
		// Envoy and ext_proc keep one stream open for their lifetime.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	mtls := cfg.flags.xdsClientCA != ""
	if mtls {
		creds, err := xdsTLS(cfg.flags)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, grpc.Creds(creds))
	}
	lis, err := net.Listen("tcp", cfg.flags.xdsAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listening for xDS: %w", err)
	}
	if !mtls && !cfg.flags.xdsInsecure && !isLoopbackAddr(lis.Addr()) {
		_ = lis.Close() // nothing was served on it; the refusal is the error
		return nil, nil, fmt.Errorf("%w: refusing to serve xDS without mutual TLS on %s: it carries provider credentials; give --xds-client-ca with --tls-cert and --tls-key, bind to 127.0.0.1, or pass --xds-insecure behind a network you trust", errUsage, lis.Addr())
	}
	vault, err := contentlog.NewVault(cfg.keyring)
	if err != nil {
		_ = lis.Close() // nothing was served on it
		return nil, nil, err
	}
	g := grpc.NewServer(opts...)
	xds.Register(ctx, g, p)
	// ext_proc sends usage on the connection it holds for config: one
	// channel to secure, and the same trust (see docs/usage.md).
	ingest := usageingest.New(cfg.store, cfg.log).KeepContent(contentlog.NewWriter(vault, int32(cfg.flags.maxContentDays), cfg.log))
	if cfg.telemetry != nil {
		if err := ingest.Instrument(cfg.telemetry.tel.Meters()); err != nil {
			_ = lis.Close() // nothing was served on it
			return nil, nil, err
		}
		ingest.Tracers = cfg.telemetry.tel.Tracers()
	}
	ingest.Register(g)
	authority.Register(g)
	return g, lis, nil
}

func xdsTLS(f serverFlags) (credentials.TransportCredentials, error) {
	if f.tlsCert == "" || f.tlsKey == "" {
		return nil, fmt.Errorf("%w: --xds-client-ca needs --tls-cert and --tls-key for the server side", errUsage)
	}
	cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("loading the xDS TLS certificate: %w", err)
	}
	pem, err := os.ReadFile(f.xdsClientCA)
	if err != nil {
		return nil, fmt.Errorf("reading the xDS client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", errUsage, f.xdsClientCA)
	}
	return credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	}), nil
}

func parseUint32(v string, dst *uint32) error {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return err
	}
	*dst = uint32(n)
	return nil
}

func adminTLS(f serverFlags) (credentials.TransportCredentials, error) {
	if f.tlsCert == "" && f.tlsKey == "" {
		return nil, nil
	}
	if f.tlsCert == "" || f.tlsKey == "" {
		return nil, fmt.Errorf("%w: give both --tls-cert and --tls-key", errUsage)
	}
	cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("loading the admin TLS certificate: %w", err)
	}
	return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), nil
}

func isLoopbackAddr(a net.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().IsLoopback()
}
