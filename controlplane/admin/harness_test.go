package admin

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/signin"
	"github.com/tollgate-dev/tollgate/controlplane/store"
)

// harness is a running admin API on 127.0.0.1 over a real gRPC connection.
type harness struct {
	t        *testing.T
	store    *store.Store
	keyring  *keyring.Keyring
	conn     *grpc.ClientConn
	operator string // operator token
	sessions *signin.Service
	logs     *syncBuffer
	changes  int
	mu       sync.Mutex
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newHarness serves the admin API on st; opts are more server options
// (telemetry).
func newHarness(t *testing.T, st *store.Store, opts ...grpc.ServerOption) *harness {
	t.Helper()
	ring, err := keyring.New(keyring.Key{ID: "test-1", Secret: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	op, err := secret.New(secret.OperatorToken)
	if err != nil {
		t.Fatal(err)
	}
	sessions, err := signin.New(st, signin.Options{OperatorToken: op.Plaintext, Argon2: signin.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, store: st, keyring: ring, operator: op.Plaintext, sessions: sessions, logs: &syncBuffer{}}
	srv, err := New(Config{
		Store: st, Keyring: ring, OperatorToken: op.Plaintext, Sessions: sessions,
		Logger:  slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Changed: func() { h.mu.Lock(); h.changes++; h.mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(append(opts, grpc.ChainUnaryInterceptor(srv.UnaryInterceptor()), grpc.ChainStreamInterceptor(srv.StreamInterceptor()))...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- g.Serve(lis) }()
	t.Cleanup(func() {
		g.Stop()
		// ErrServerStopped: the test ended before Serve began.
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("serving the admin API: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("closing the client connection: %v", err)
		}
	})
	h.conn = conn
	return h
}

// ctx returns a context that authenticates as token.
func (h *harness) ctx(token string) context.Context {
	// Generous: under SERIALIZABLE with 100 concurrent writers on a loaded
	// CI machine, a call may need many retries; a short deadline would turn
	// the store's retries into a failure the test is not about.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	h.t.Cleanup(cancel)
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func (h *harness) op() context.Context { return h.ctx(h.operator) }

func (h *harness) tenants() adminv1.TenantServiceClient {
	return adminv1.NewTenantServiceClient(h.conn)
}
func (h *harness) accounts() adminv1.AccountServiceClient {
	return adminv1.NewAccountServiceClient(h.conn)
}
func (h *harness) keys() adminv1.KeyServiceClient     { return adminv1.NewKeyServiceClient(h.conn) }
func (h *harness) tokens() adminv1.TokenServiceClient { return adminv1.NewTokenServiceClient(h.conn) }
func (h *harness) providers() adminv1.ProviderServiceClient {
	return adminv1.NewProviderServiceClient(h.conn)
}
func (h *harness) models() adminv1.ModelServiceClient { return adminv1.NewModelServiceClient(h.conn) }
func (h *harness) policies() adminv1.PolicyServiceClient {
	return adminv1.NewPolicyServiceClient(h.conn)
}
func (h *harness) audit() adminv1.AuditServiceClient { return adminv1.NewAuditServiceClient(h.conn) }

func (h *harness) createTenant(slug string) *adminv1.Tenant {
	h.t.Helper()
	resp, err := h.tenants().CreateTenant(h.op(), &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: slug}})
	if err != nil {
		h.t.Fatalf("creating tenant %s: %v", slug, err)
	}
	return resp.GetTenant()
}

func (h *harness) createKey(ctx context.Context, tenant, name string) *adminv1.CreateKeyResponse {
	h.t.Helper()
	resp, err := h.keys().CreateKey(ctx, &adminv1.CreateKeyRequest{Tenant: tenant, Key: &adminv1.Key{Name: name}})
	if err != nil {
		h.t.Fatalf("creating key %s in %s: %v", name, tenant, err)
	}
	return resp
}

// tenantAdmin creates a tenant admin token for tenant and returns it.
func (h *harness) tenantAdmin(tenant string) string {
	h.t.Helper()
	resp, err := h.tokens().CreateAdminToken(h.op(), &adminv1.CreateAdminTokenRequest{Tenant: tenant, AdminToken: &adminv1.AdminToken{Name: "admin"}})
	if err != nil {
		h.t.Fatalf("creating admin token for %s: %v", tenant, err)
	}
	return resp.GetSecret()
}

func (h *harness) createProvider(ctx context.Context, p *adminv1.Provider) *adminv1.Provider {
	h.t.Helper()
	resp, err := h.providers().CreateProvider(ctx, &adminv1.CreateProviderRequest{Provider: p})
	if err != nil {
		h.t.Fatalf("creating provider %s: %v", p.GetName(), err)
	}
	return resp.GetProvider()
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("got %v (%v), want %v", got, err, want)
	}
}

// violations returns the BadRequest field names of an InvalidArgument error.
func violations(t *testing.T, err error) []string {
	t.Helper()
	wantCode(t, err, codes.InvalidArgument)
	var fields []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetDescription() == "" {
					t.Errorf("violation of %s has no description", v.GetField())
				}
				fields = append(fields, v.GetField())
			}
		}
	}
	if len(fields) == 0 {
		t.Fatalf("InvalidArgument without field violations: %v", err)
	}
	return fields
}
