package web

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/admin"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/signin"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/usageingest"
)

// console is a web console over a real admin API and store, served over
// TLS by httptest so that Secure cookies behave as in production.
type console struct {
	t        testing.TB
	srv      *httptest.Server
	web      *Server
	conn     *grpc.ClientConn
	operator string
	sessions *signin.Service
	mail     *fakeMailer
}

type fakeMailer struct {
	mu   sync.Mutex
	sent []Message
	got  chan Message
}

func (m *fakeMailer) Send(_ context.Context, msg Message) error {
	m.mu.Lock()
	m.sent = append(m.sent, msg)
	m.mu.Unlock()
	m.got <- msg
	return nil
}

type consoleOption func(*Config)

func withMail(m *fakeMailer) consoleOption { return func(c *Config) { c.Mailer = m } }

func newConsole(t testing.TB, st *store.Store, opts ...consoleOption) *console {
	t.Helper()
	ring, err := keyring.New(keyring.Key{ID: "test-1", Secret: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	op, err := secret.New(secret.OperatorToken)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sessions, err := signin.New(st, signin.Options{OperatorToken: op.Plaintext, Argon2: signin.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1}, AttemptsPerAddr: 1000, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	adm, err := admin.New(admin.Config{Store: st, Keyring: ring, OperatorToken: op.Plaintext, Sessions: sessions, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(adm.UnaryInterceptor()), grpc.ChainStreamInterceptor(adm.StreamInterceptor()))
	adm.Register(g)
	buf := bufconn.Listen(1 << 20)
	go func() { _ = g.Serve(buf) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///admin",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return buf.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cfg := Config{Admin: conn, Sessions: sessions, Logger: log}
	for _, o := range opts {
		o(&cfg)
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	srv := httptest.NewTLSServer(w)
	t.Cleanup(srv.Close)
	c := &console{t: t, srv: srv, web: w, conn: conn, operator: op.Plaintext, sessions: sessions}
	if m, ok := cfg.Mailer.(*fakeMailer); ok {
		c.mail = m
	}
	return c
}

// op is a context that calls the admin API as the operator.
func (c *console) op() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	c.t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.operator)
}

func (c *console) tenant(slug string) *adminv1.Tenant {
	c.t.Helper()
	resp, err := adminv1.NewTenantServiceClient(c.conn).CreateTenant(c.op(), &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: slug, Name: strings.ToUpper(slug[:1]) + slug[1:] + " Inc"}})
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.GetTenant()
}

const password = "correct horse battery staple"

// person creates an account with a password and returns it.
func (c *console) person(tenant, email string, role adminv1.AccountRole) *adminv1.Account {
	c.t.Helper()
	resp, err := adminv1.NewAccountServiceClient(c.conn).CreateAccount(c.op(), &adminv1.CreateAccountRequest{Tenant: tenant, Account: &adminv1.Account{Email: email, Name: strings.Split(email, "@")[0], Role: role}})
	if err != nil {
		c.t.Fatal(err)
	}
	link, err := c.sessions.IssuePasswordLink(context.Background(), uuid.MustParse(resp.GetAccount().GetId()))
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.sessions.SetPassword(context.Background(), link.Secret, password); err != nil {
		c.t.Fatal(err)
	}
	return resp.GetAccount()
}

func (c *console) key(tenant, name, accountID string) *adminv1.Key {
	c.t.Helper()
	resp, err := adminv1.NewKeyServiceClient(c.conn).CreateKey(c.op(), &adminv1.CreateKeyRequest{Tenant: tenant, Key: &adminv1.Key{Name: name, AccountId: accountID}})
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.GetKey()
}

// browser is one person's browser: a cookie jar and the last page's form
// token.
type browser struct {
	c    *console
	http *http.Client
	csrf string
}

func (c *console) browser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		c.t.Fatal(err)
	}
	h := *c.srv.Client() // a copy: each browser has its own jar
	h.Jar = jar
	h.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{c: c, http: &h}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

type page struct {
	code     int
	body     string
	location string
	header   http.Header
}

func (b *browser) do(req *http.Request) page {
	b.c.t.Helper()
	resp, err := b.http.Do(req)
	if err != nil {
		b.c.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.c.t.Fatal(err)
	}
	if m := csrfField.FindStringSubmatch(string(body)); m != nil {
		b.csrf = m[1]
	}
	return page{code: resp.StatusCode, body: string(body), location: resp.Header.Get("Location"), header: resp.Header}
}

func (b *browser) get(path string) page {
	b.c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.c.srv.URL+path, nil)
	if err != nil {
		b.c.t.Fatal(err)
	}
	return b.do(req)
}

// post sends a form with the token of the last page seen (unless the
// form sets csrf itself).
func (b *browser) post(path string, form url.Values) page {
	b.c.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.csrf)
	}
	req, err := http.NewRequest(http.MethodPost, b.c.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func (b *browser) signIn(email string) {
	b.c.t.Helper()
	b.get("/signin")
	p := b.post("/signin", url.Values{"email": {email}, "password": {password}})
	if p.code != http.StatusSeeOther {
		b.c.t.Fatalf("signing in %s: %d\n%s", email, p.code, p.body)
	}
}

func (b *browser) signInOperator() {
	b.c.t.Helper()
	b.get("/signin/operator")
	p := b.post("/signin/operator", url.Values{"token": {b.c.operator}})
	if p.code != http.StatusSeeOther || p.location != "/tenants" {
		b.c.t.Fatalf("operator sign-in: %d %s\n%s", p.code, p.location, p.body)
	}
}

func wantStatus(t *testing.T, what string, p page, code int) {
	t.Helper()
	if p.code != code {
		t.Fatalf("%s: status %d, want %d\n%s", what, p.code, code, p.body)
	}
}

func wantIn(t *testing.T, what string, p page, parts ...string) {
	t.Helper()
	for _, s := range parts {
		if !strings.Contains(p.body, s) {
			t.Errorf("%s: the page lacks %q", what, s)
		}
	}
}

// usage stores one request's usage through the real ingest path, which
// keeps the rollups the pages read.
func (c *console) usage(st *store.Store, tenantID, keyID, model string, at time.Time, in, out, cost int64) {
	c.t.Helper()
	req := &usagev1.IngestRequest{Records: []*usagev1.UsageRecord{{
		RequestId: uuid.NewString(), TenantId: tenantID, KeyId: keyID, Model: model, Provider: "openai", UpstreamModel: model,
		InputTokens: in, OutputTokens: out, CostMicros: cost, StatusCode: 200, LatencyMs: 120, Time: timestamppb.New(at),
	}}}
	resp, err := usageingest.New(st, slog.New(slog.DiscardHandler)).Store(context.Background(), req)
	if err != nil || len(resp.GetRejected()) > 0 {
		c.t.Fatalf("storing usage: %v %v", err, resp.GetRejected())
	}
}
