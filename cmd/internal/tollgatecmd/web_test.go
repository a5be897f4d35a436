package tollgatecmd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/admin"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/signin"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/web"
	"github.com/tollgate-dev/tollgate/telemetry"
)

// tollgate dev serves the web console and names it in its banner.
func TestDevServesTheWebConsole(t *testing.T) {
	d := startDevWith(t, t.TempDir())
	m := regexp.MustCompile(`(?m)^\s+web console\s+(http://\S+)`).FindStringSubmatch(d.banner)
	if m == nil {
		t.Fatalf("the banner names no web console:\n%s", d.banner)
	}
	resp, err := http.Get(m[1] + "/signin")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `action="/signin"`) {
		t.Errorf("GET /signin: %d\n%s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("no CSP on the console: %q", csp)
	}
}

func TestWebConsoleRefusesPlaintextBeyondLoopback(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main(t.Context(), []string{"dev", "--data-dir", t.TempDir(), "--admin-addr", "127.0.0.1:0", "--xds-addr", "127.0.0.1:0", "--extproc-listen", "127.0.0.1:0",
		"--dataplane", "none", "--metrics-addr", "", "--web-addr", "0.0.0.0:0"}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "web console without TLS") {
		t.Errorf("exit %d, stderr %q; want a refusal to serve the console without TLS", code, errb.String())
	}
}

// With telemetry on, a console request is a server span named for its
// route, and the admin calls it makes in process are server spans under
// it, counted in rpc.server.call.duration like the network admin API's;
// no span holds the operator's token or the tenant's name.
func TestConsoleRequestsAndTheirAdminCallsAreTraced(t *testing.T) {
	ctx := t.Context()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ring, err := keyring.New(keyring.Key{ID: "test", Secret: make([]byte, keyring.SecretSize)})
	if err != nil {
		t.Fatal(err)
	}
	op, err := secret.New(secret.OperatorToken)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	sessions, err := signin.New(st, signin.Options{OperatorToken: op.Plaintext, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	adm, err := admin.New(admin.Config{Store: st, Keyring: ring, OperatorToken: op.Plaintext, Sessions: sessions, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	tel, err := telemetry.New(ctx, telemetry.Options{Service: "tollgate-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))

	inproc, conn, err := consoleAdmin(adm, tel.Meters(), tp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inproc.Stop)
	t.Cleanup(func() { _ = conn.Close() })
	const tenantName = "Lovelace Analytical Engines"
	opCtx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+op.Plaintext)
	if _, err := adminv1.NewTenantServiceClient(conn).CreateTenant(opCtx, &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme", Name: tenantName}}); err != nil {
		t.Fatal(err)
	}
	console, err := web.New(web.Config{Admin: conn, Sessions: sessions, InsecureCookies: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(consoleHandler(console, tp))
	t.Cleanup(srv.Close)

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	_, form := get("/signin/operator")
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(form)
	if m == nil {
		t.Fatalf("no form token on the operator sign-in page:\n%s", form)
	}
	resp, err := client.PostForm(srv.URL+"/signin/operator", url.Values{"csrf": {m[1]}, "token": {op.Plaintext}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("operator sign-in: status %d", resp.StatusCode)
	}
	if code, body := get("/tenants"); code != http.StatusOK || !strings.Contains(body, tenantName) {
		t.Fatalf("GET /tenants: %d\n%s", code, body)
	}
	if code, _ := get("/static/app.css"); code != http.StatusOK {
		t.Fatalf("GET /static/app.css: %d", code)
	}

	var page sdktrace.ReadOnlySpan
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range spans.Ended() {
		byName[s.Name()] = append(byName[s.Name()], s)
		if text := fmt.Sprint(s.Name(), s.Attributes(), s.Status(), s.Events()); strings.Contains(text, op.Plaintext) || strings.Contains(text, tenantName) {
			t.Errorf("span %s holds the operator's token or the tenant's name: %s", s.Name(), text)
		}
		if strings.HasPrefix(s.Name(), "GET /static") {
			t.Errorf("a static file has a span: %s", s.Name())
		}
	}
	if ps := byName["GET /tenants"]; len(ps) == 1 && ps[0].SpanKind() == oteltrace.SpanKindServer {
		page = ps[0]
	} else {
		t.Fatalf("no single GET /tenants server span among %v", slices.Collect(maps.Keys(byName)))
	}
	if len(byName["POST /signin/operator"]) != 1 {
		t.Errorf("no POST /signin/operator span among %v", slices.Collect(maps.Keys(byName)))
	}
	var under bool
	for _, s := range byName["tollgate.admin.v1.TenantService/ListTenants"] {
		under = under || (s.Parent().SpanID() == page.SpanContext().SpanID() && s.SpanContext().TraceID() == page.SpanContext().TraceID())
	}
	if !under {
		t.Errorf("no ListTenants server span under GET /tenants among %v", slices.Collect(maps.Keys(byName)))
	}
	fams, err := tel.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := fams.Sum("rpc_server_call_duration_seconds", "rpc_method", "tollgate.admin.v1.TenantService/ListTenants", "rpc_response_status_code", "OK"); n < 1 {
		t.Errorf("the console's ListTenants calls were counted %v times in rpc_server_call_duration_seconds, want at least once", n)
	}
}
