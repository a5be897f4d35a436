package tollgatecmd

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/tollgate-dev/tollgate/controlplane/admin"
	"github.com/tollgate-dev/tollgate/controlplane/notify"
	"github.com/tollgate-dev/tollgate/controlplane/signin"
	"github.com/tollgate-dev/tollgate/controlplane/web"
	"github.com/tollgate-dev/tollgate/telemetry"
)

// webFlags configure the web console.
type webFlags struct {
	addr     string
	insecure bool
	baseURL  string
	ipHeader string

	ssoName, ssoIssuer, ssoClientID, ssoClientSecretFile string
}

func (f *webFlags) register(fs *flag.FlagSet, defaultAddr string) {
	fs.StringVar(&f.addr, "web-addr", defaultAddr, "address of the web console (empty: no console); TLS with --tls-cert and --tls-key like the admin API")
	fs.BoolVar(&f.insecure, "web-insecure", false, "serve the web console without TLS on a non-loopback address: only behind a proxy that terminates TLS (cookies stay Secure)")
	fs.StringVar(&f.baseURL, "web-base-url", os.Getenv("TOLLGATE_WEB_BASE_URL"), "the console's external URL, e.g. https://console.example.com, for e-mailed links and single sign-on (env TOLLGATE_WEB_BASE_URL)")
	fs.StringVar(&f.ipHeader, "web-client-ip-header", "", "behind a proxy: the header it passes the client's address in (X-Forwarded-For: its last entry; X-Real-IP), for counting sign-in attempts per client; only set it when every request comes through that proxy")
	fs.StringVar(&f.ssoIssuer, "sso-issuer", os.Getenv("TOLLGATE_SSO_ISSUER"), "OpenID Connect issuer URL for single sign-on to the console (env TOLLGATE_SSO_ISSUER)")
	fs.StringVar(&f.ssoClientID, "sso-client-id", os.Getenv("TOLLGATE_SSO_CLIENT_ID"), "the console's client id at the OpenID Connect provider (env TOLLGATE_SSO_CLIENT_ID)")
	fs.StringVar(&f.ssoClientSecretFile, "sso-client-secret-file", "", "file holding the OpenID Connect client secret (or env TOLLGATE_SSO_CLIENT_SECRET)")
	fs.StringVar(&f.ssoName, "sso-name", "single sign-on", `the provider's name on the sign-in button ("Sign in with …")`)
}

// secretFrom reads a secret from a file, else from an environment variable.
func secretFrom(file, env string) (string, error) {
	if file == "" {
		return os.Getenv(env), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", file, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// smtpMailer sends the console's e-mail through the notifications relay.
type smtpMailer struct{ c *notify.SMTPConfig }

func (m smtpMailer) Send(ctx context.Context, msg web.Message) error {
	return m.c.SendText(ctx, msg.To, msg.Subject, msg.Text)
}

// runningWeb is a started console.
type runningWeb struct {
	addr   net.Addr
	tls    bool
	http   *http.Server
	inproc *grpc.Server
	conn   *grpc.ClientConn
	errc   chan error
	done   chan struct{}
}

// URL is where a browser reaches the console.
func (w *runningWeb) URL() string {
	if w == nil {
		return ""
	}
	scheme := "http"
	if w.tls {
		scheme = "https"
	}
	return scheme + "://" + w.addr.String()
}

// startWeb serves the console on --web-addr. It reaches the admin API over
// an in-process gRPC server that has the same services and interceptors as
// the network one, so every page goes through the admin API's
// authentication, roles and audit.
func startWeb(ctx context.Context, cfg serveConfig, adm *admin.Server, sessions *signin.Service) (*runningWeb, error) {
	f := cfg.flags.web
	if f.addr == "" {
		return nil, nil
	}
	var tlsConf *tls.Config
	if cfg.flags.tlsCert != "" || cfg.flags.tlsKey != "" {
		if cfg.flags.tlsCert == "" || cfg.flags.tlsKey == "" {
			return nil, fmt.Errorf("%w: give both --tls-cert and --tls-key", errUsage)
		}
		cert, err := tls.LoadX509KeyPair(cfg.flags.tlsCert, cfg.flags.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("loading the web console's TLS certificate: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	wc := web.Config{Sessions: sessions, BaseURL: f.baseURL, ClientIPHeader: f.ipHeader, Logger: cfg.log.With("component", "web")}
	// Password links go through the relay notifications use (--smtp-*).
	smtp, err := cfg.flags.notify.smtpConfig()
	if err != nil {
		return nil, err
	}
	if smtp != nil {
		wc.Mailer = smtpMailer{smtp}
	}
	if f.ssoIssuer != "" {
		secret, err := secretFrom(f.ssoClientSecretFile, "TOLLGATE_SSO_CLIENT_SECRET")
		if err != nil {
			return nil, err
		}
		if f.baseURL == "" {
			return nil, fmt.Errorf("%w: single sign-on needs --web-base-url (the provider redirects back to it)", errUsage)
		}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		sso, err := web.NewSSO(dctx, web.SSOConfig{Name: f.ssoName, Issuer: f.ssoIssuer, ClientID: f.ssoClientID, ClientSecret: secret, BaseURL: f.baseURL})
		cancel()
		if err != nil {
			return nil, err
		}
		wc.SSO = sso
	}

	lis, err := net.Listen("tcp", f.addr)
	if err != nil {
		return nil, fmt.Errorf("listening for the web console: %w", err)
	}
	loopback := isLoopbackAddr(lis.Addr())
	if tlsConf == nil && !f.insecure && !loopback {
		_ = lis.Close() // nothing was served on it; the refusal is the error
		return nil, fmt.Errorf("%w: refusing to serve the web console without TLS on %s: passwords and session cookies would cross the network in clear text; give --tls-cert and --tls-key, bind to 127.0.0.1, or pass --web-insecure behind a proxy that terminates TLS", errUsage, lis.Addr())
	}
	// Plain HTTP on loopback is a developer's machine: browsers do not
	// send Secure cookies to plain http:// everywhere, so leave it off there.
	wc.InsecureCookies = tlsConf == nil && !f.insecure

	inproc, conn, err := consoleAdmin(adm, cfg.telemetry.meters(), cfg.telemetry.tracers())
	if err != nil {
		_ = lis.Close() // the admin API's error is the one to report
		return nil, err
	}
	wc.Admin = conn
	console, err := web.New(wc)
	if err != nil {
		_ = lis.Close() // likewise
		_ = conn.Close()
		inproc.Stop()
		return nil, err
	}
	hs := &http.Server{
		Handler: consoleHandler(console, cfg.telemetry.tracers()), TLSConfig: tlsConf,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(cfg.log.Handler(), slog.LevelWarn),
	}
	rw := &runningWeb{addr: lis.Addr(), tls: tlsConf != nil, http: hs, inproc: inproc, conn: conn, errc: make(chan error, 2), done: make(chan struct{})}
	go func() {
		defer close(rw.done)
		console.Run(ctx)
	}()
	go func() {
		var err error
		if tlsConf != nil {
			err = hs.ServeTLS(lis, "", "")
		} else {
			err = hs.Serve(lis)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			rw.errc <- fmt.Errorf("serving the web console: %w", err)
		}
	}()
	cfg.log.Info("web console listening", "url", rw.URL(), "email", wc.Mailer != nil, "sso", wc.SSO != nil)
	return rw, nil
}

// consoleAdmin serves adm's services on an in-process listener for the
// console, with the network admin server's options (adminServerOptions),
// and connects to it. With telemetry (tp not nil), each call also carries
// the trace context of the console request that makes it, so that the
// call's server span is a child of the request's span.
func consoleAdmin(adm *admin.Server, mp metric.MeterProvider, tp trace.TracerProvider) (*grpc.Server, *grpc.ClientConn, error) {
	opts, err := adminServerOptions(adm, mp, tp)
	if err != nil {
		return nil, nil, err
	}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if tp != nil {
		dial = append(dial, telemetry.GRPCClientTraceContext()...)
	}
	buf := bufconn.Listen(1 << 20)
	dial = append(dial, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return buf.DialContext(ctx) }))
	conn, err := grpc.NewClient("passthrough:///tollgate-admin", dial...)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting the web console to the admin API: %w", err)
	}
	g := grpc.NewServer(opts...)
	adm.Register(g)
	go func() { _ = g.Serve(buf) }() // ends with Stop
	return g, conn, nil
}

// consoleHandler is the console with, when telemetry is on (tp not nil), a
// server span per request. Static files and health checks get none: a page
// loads several files, and a probe would start a trace every few seconds.
func consoleHandler(console *web.Server, tp trace.TracerProvider) http.Handler {
	if tp == nil {
		return console
	}
	return telemetry.HTTPServerTraces(tp, console, "/static/", "/healthz")
}

// stop ends the console: requests in flight get up to 10 seconds.
func (w *runningWeb) stop() {
	if w == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = w.http.Shutdown(ctx) // past the deadline the rest is cut; nothing to report
	_ = w.conn.Close()
	w.inproc.Stop()
	<-w.done
}
