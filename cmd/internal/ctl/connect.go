package ctl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/tollgate-dev/tollgate/cmd/internal/datadir"
)

// connect dials the admin API once per invocation. Commands call it only after
// their own flags are checked, so a usage mistake is reported as one even when
// no token or server is around.
func (c *cli) connect() (*grpc.ClientConn, error) {
	if c.conn != nil {
		return c.conn, nil
	}
	target := c.target()
	transport, err := c.transportCredentials(target)
	if err != nil {
		return nil, err
	}
	token, source, err := c.readToken()
	if err != nil {
		return nil, err
	}
	c.tokenSource = source
	tc, err := traceContextFromEnv()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(transport),
		grpc.WithPerRPCCredentials(bearer{token: token, requireTLS: c.tlsWanted()}),
		grpc.WithChainUnaryInterceptor(c.deadline, tc.unary),
		grpc.WithStreamInterceptor(tc.stream),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", target, err)
	}
	c.conn = conn
	return conn, nil
}

func (c *cli) target() string {
	if c.server != "" {
		return c.server
	}
	if s := os.Getenv("TOLLGATE_SERVER"); s != "" {
		return s
	}
	return defaultServer
}

func (c *cli) tlsWanted() bool {
	return c.useTLS || c.tlsCA != "" || c.tlsServerName != ""
}

// transportCredentials picks TLS or plaintext. Plaintext is the default
// because `tollgate dev` listens on loopback without TLS; anywhere else the
// token would cross the network readable by anyone on the path, so that
// takes an explicit --insecure.
func (c *cli) transportCredentials(target string) (credentials.TransportCredentials, error) {
	if !c.tlsWanted() {
		if !isLoopback(target) && !c.insecure {
			return nil, &usageError{terse: true, msg: fmt.Sprintf(
				"refusing to send the admin token to %s without TLS: anyone on the network path could read it and act as you.\n"+
					"Use --tls (or --tls-ca FILE) if the server has a certificate, or --insecure if the network is trusted.", target)}
		}
		return insecure.NewCredentials(), nil
	}
	if c.insecure {
		// --insecure means "plaintext is fine"; letting it also mean "skip
		// certificate checks", as curl -k does, would make --tls --insecure
		// silently weaker than the user probably thinks.
		return nil, usagef("--insecure allows plaintext and cannot be combined with --tls, --tls-ca or --tls-server-name")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.tlsServerName}
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("read --tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read --tls-ca: no PEM certificates in %s", c.tlsCA)
		}
		cfg.RootCAs = pool
	}
	return credentials.NewTLS(cfg), nil
}

// isLoopback reports whether a gRPC target stays on this machine. Host names
// other than localhost are not resolved: a name that resolves to loopback
// today may not tomorrow, so they count as remote.
func isLoopback(target string) bool {
	endpoint := target
	if scheme, rest, ok := strings.Cut(target, ":"); ok && isScheme(scheme) {
		switch scheme {
		case "unix", "unix-abstract":
			return true
		}
		u, err := url.Parse(target)
		if err == nil {
			rest = strings.TrimPrefix(u.Path, "/")
			if u.Opaque != "" {
				rest = u.Opaque
			}
		}
		endpoint = rest
	}
	host := endpoint
	if h, _, err := net.SplitHostPort(endpoint); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}

// isScheme tells the scheme of a gRPC target URI ("dns" in dns:///host:port)
// from a host name followed by a port ("localhost" in localhost:7070). Only
// the resolvers gRPC ships with count; any other prefix is a host.
func isScheme(s string) bool {
	switch s {
	case "dns", "passthrough", "unix", "unix-abstract":
		return true
	}
	return false
}

// readToken finds the admin token. The order lets a flag beat the
// environment, and an explicit token beat a file named in the environment;
// the data directory's file is the fallback that makes `tollgate dev` work
// with no setup. An explicitly named file that cannot be read is an error,
// not a reason to fall through to a token the user did not ask for.
func (c *cli) readToken() (token, source string, err error) {
	if c.tokenFile != "" {
		return readTokenFile(c.tokenFile, "--token-file "+c.tokenFile)
	}
	if t := os.Getenv("TOLLGATE_TOKEN"); t != "" {
		token = strings.TrimSpace(t)
		if err := checkToken(token); err != nil {
			return "", "", fmt.Errorf("$TOLLGATE_TOKEN: %w", err)
		}
		return token, "$TOLLGATE_TOKEN", nil
	}
	if f := os.Getenv("TOLLGATE_TOKEN_FILE"); f != "" {
		return readTokenFile(f, "$TOLLGATE_TOKEN_FILE ("+f+")")
	}
	path := filepath.Join(datadir.Default(), datadir.OperatorTokenFile)
	token, source, err = readTokenFile(path, path)
	if errors.Is(err, os.ErrNotExist) {
		return "", "", fmt.Errorf("no admin token: %s does not exist; run `tollgate dev` on this machine, "+
			"or pass --token-file, or set $TOLLGATE_TOKEN or $TOLLGATE_TOKEN_FILE", path)
	}
	return token, source, err
}

func readTokenFile(path, source string) (string, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		// The error names the path only; it never quotes the file.
		return "", "", fmt.Errorf("read admin token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if err := checkToken(token); err != nil {
		return "", "", fmt.Errorf("admin token in %s: %w", path, err)
	}
	return token, source, nil
}

// checkToken rejects tokens gRPC could not send as a header value, before
// gRPC's own error (which may quote the value) gets the chance.
func checkToken(token string) error {
	if token == "" {
		return errors.New("empty")
	}
	for i := 0; i < len(token); i++ {
		if b := token[i]; b < 0x21 || b > 0x7e {
			return errors.New("contains whitespace or a character that cannot be sent in a header")
		}
	}
	return nil
}

// bearer sends the admin token with every call.
type bearer struct {
	token string
	// requireTLS lets gRPC refuse to send the token over plaintext as a
	// second line behind transportCredentials: it is false only when
	// plaintext was allowed (loopback or --insecure).
	requireTLS bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.requireTLS }

// String keeps the token out of any log line that formats the credentials.
func (b bearer) String() string { return "bearer(redacted)" }

// deadline gives each call --timeout unless the caller set a deadline, so a
// list that follows many pages is not cut off by one overall deadline.
func (c *cli) deadline(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if _, ok := ctx.Deadline(); !ok && c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// traceContext is the W3C trace context (traceparent, tracestate) every
// call carries, from the TRACEPARENT and TRACESTATE environment variables
// (OpenTelemetry's environment carriers): a script or CI job that traces
// runs tollgatectl with them set, and the admin API's spans of its calls
// join the job's trace. Empty when TRACEPARENT is unset.
type traceContext []string // key, value, key, value

func traceContextFromEnv() (traceContext, error) {
	parent := os.Getenv("TRACEPARENT")
	if parent == "" {
		return nil, nil
	}
	var w3c propagation.TraceContext
	ctx := w3c.Extract(context.Background(), propagation.MapCarrier{"traceparent": parent, "tracestate": os.Getenv("TRACESTATE")})
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil, &usageError{terse: true, msg: fmt.Sprintf("TRACEPARENT %q is not a W3C traceparent (00-<32 hex digits>-<16 hex digits>-<2 hex digits>); unset it or fix it", parent)}
	}
	out := propagation.MapCarrier{}
	w3c.Inject(ctx, out)
	var tc traceContext
	for _, k := range out.Keys() {
		tc = append(tc, k, out[k])
	}
	return tc, nil
}

func (tc traceContext) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if len(tc) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, tc...)
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (tc traceContext) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if len(tc) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, tc...)
	}
	return streamer(ctx, desc, cc, method, opts...)
}
