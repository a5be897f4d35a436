package tollgatecmd

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/tollgate-dev/tollgate/controlplane/admin"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/store"
)

// serverFlags are the flags of every command that serves the admin API.
type serverFlags struct {
	adminAddr     string
	adminInsecure bool
	tlsCert       string
	tlsKey        string
	noMigrate     bool
	logLevel      slog.Level
}

func (f *serverFlags) register(fs *flag.FlagSet, defaultAddr string) {
	fs.StringVar(&f.adminAddr, "admin-addr", defaultAddr, "address of the admin gRPC API")
	fs.BoolVar(&f.adminInsecure, "admin-insecure", false, "serve the admin API without TLS on a non-loopback address (only behind a network you trust, e.g. a service mesh)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate for the admin API")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key for the admin API")
	fs.BoolVar(&f.noMigrate, "no-migrate", false, "do not create or upgrade the database schema at start-up (run `tollgate migrate` instead)")
	fs.TextVar(&f.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
}

func runControlPlane(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("tollgate controlplane", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		sf            serverFlags
		dsn           string
		masterKeyFile string
		tokenFile     string
	)
	sf.register(fs, ":7070")
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
	defer st.Close()
	return serve(ctx, serveConfig{flags: sf, store: st, keyring: ring, operatorToken: token, log: log})
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
	// ready, if set, receives the admin API's address once it accepts calls.
	ready func(adminAddr net.Addr)
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
	adm, err := admin.New(admin.Config{Store: cfg.store, Keyring: cfg.keyring, OperatorToken: cfg.operatorToken, Logger: cfg.log})
	if err != nil {
		return err
	}
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(adm.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(adm.StreamInterceptor()),
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
		lis.Close()
		return fmt.Errorf("%w: refusing to serve the admin API without TLS on %s: tokens would cross the network in clear text; give --tls-cert and --tls-key, bind to 127.0.0.1, or pass --admin-insecure behind a network you trust", errUsage, lis.Addr())
	}
	g := grpc.NewServer(opts...)
	adm.Register(g)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	reflection.Register(g)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	cfg.log.Info("admin API listening", "addr", lis.Addr().String(), "tls", creds != nil)
	if cfg.ready != nil {
		cfg.ready(lis.Addr())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serving the admin API: %w", err)
	case <-ctx.Done():
	}
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		g.Stop()
	}
	cfg.log.Info("control plane stopped")
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
