package ctl

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/admin"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

// realAdmin serves the real admin API on a SQLite store and returns its
// address, the operator token and a client context.
func realAdmin(t *testing.T) (addr, token string, op context.Context, conn *grpc.ClientConn) {
	t.Helper()
	st := storetest.SQLite(t)
	ring, err := keyring.New(keyring.Key{ID: "test", Secret: bytes.Repeat([]byte{3}, keyring.SecretSize)})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := secret.New(secret.OperatorToken)
	if err != nil {
		t.Fatal(err)
	}
	adm, err := admin.New(admin.Config{Store: st, Keyring: ring, OperatorToken: sec.Plaintext})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(adm.UnaryInterceptor()), grpc.ChainStreamInterceptor(adm.StreamInterceptor()))
	adm.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	op = metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+sec.Plaintext)
	return lis.Addr().String(), sec.Plaintext, op, conn
}

func TestPrivacyCommandsAgainstTheAdminAPI(t *testing.T) {
	addr, token, op, conn := realAdmin(t)
	if _, err := adminv1.NewTenantServiceClient(conn).CreateTenant(op, &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme"}}); err != nil {
		t.Fatal(err)
	}
	acct, err := adminv1.NewAccountServiceClient(conn).CreateAccount(op, &adminv1.CreateAccountRequest{Tenant: "acme", Account: &adminv1.Account{Email: "ada@acme.example", Name: "Ada"}})
	if err != nil {
		t.Fatal(err)
	}
	id := acct.GetAccount().GetId()
	cli := func(stdin string, args ...string) result {
		cleanEnv(t)
		t.Setenv("TOLLGATE_TOKEN", token)
		return runCLI(t, stdin, append([]string{"--server", addr}, args...)...)
	}

	file := filepath.Join(t.TempDir(), "acme.ndjson")
	if r := cli("", "privacy", "export", "--tenant", "acme", "--file", file); r.code != 0 {
		t.Fatalf("export: %+v", r)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("export file mode %v, want 0600", fi.Mode().Perm())
	}
	if !bytes.Contains(b, []byte(`"section":"accounts"`)) || !bytes.Contains(b, []byte("ada@acme.example")) {
		t.Errorf("export:\n%s", b)
	}

	if r := cli("", "privacy", "correct", "--tenant", "acme", "--account", id, "--name", "Ada L."); r.code != 0 || !strings.Contains(r.stdout, "name") {
		t.Errorf("correct: %+v", r)
	}
	if r := cli("", "privacy", "restrict", "--tenant", "acme", "--account", id, "--reason", "laptop stolen"); r.code != 0 {
		t.Errorf("restrict: %+v", r)
	}
	if a, err := adminv1.NewAccountServiceClient(conn).GetAccount(op, &adminv1.GetAccountRequest{Id: id}); err != nil || !a.GetAccount().GetRestricted() || a.GetAccount().GetRestrictionReason() != "laptop stolen" {
		t.Errorf("after restrict: %v, %v", a.GetAccount(), err)
	}
	// Erasure asks for the subject, and a wrong answer erases nothing.
	if r := cli("nope\n", "privacy", "erase", "--tenant", "acme", "--account", id); r.code != 2 || !strings.Contains(r.stderr, "not confirmed") {
		t.Errorf("unconfirmed erase: %+v", r)
	}
	if _, err := adminv1.NewAccountServiceClient(conn).GetAccount(op, &adminv1.GetAccountRequest{Id: id}); err != nil {
		t.Fatalf("the account is gone after an unconfirmed erase: %v", err)
	}
	if r := cli(id+"\n", "privacy", "erase", "--tenant", "acme", "--account", id); r.code != 0 || !strings.Contains(r.stdout, "ERASED") {
		t.Errorf("erase: %+v", r)
	}
	if _, err := adminv1.NewAccountServiceClient(conn).GetAccount(op, &adminv1.GetAccountRequest{Id: id}); err == nil {
		t.Error("the account survived its erasure")
	}
	if r := cli("", "privacy", "export", "--tenant", "acme"); r.code != 2 || !strings.Contains(r.stderr, "--file") {
		t.Errorf("export without --file: %+v", r)
	}
}
