package ctl

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// authorization returns the authorization metadata of the only call made.
func authorization(t *testing.T, f *fakeServer) string {
	t.Helper()
	calls := f.recorded()
	if len(calls) != 1 {
		t.Fatalf("want 1 call, got %v", methods(calls))
	}
	v := calls[0].md.Get("authorization")
	if len(v) != 1 {
		t.Fatalf("authorization metadata = %q, want one value", v)
	}
	return v[0]
}

// TestTokenSources checks the order tokens are looked for in: --token-file,
// $TOLLGATE_TOKEN, $TOLLGATE_TOKEN_FILE, then the data directory. Each row
// removes the source the row before used.
func TestTokenSources(t *testing.T) {
	tests := []struct {
		name                                   string
		flag, env, envFile, dataDir, wantToken string
	}{
		{name: "flag beats everything", flag: "tok-flag", env: "tok-env", envFile: "tok-envfile", dataDir: "tok-datadir", wantToken: "tok-flag"},
		{name: "env token beats files", env: "tok-env", envFile: "tok-envfile", dataDir: "tok-datadir", wantToken: "tok-env"},
		{name: "env file beats data dir", envFile: "tok-envfile", dataDir: "tok-datadir", wantToken: "tok-envfile"},
		{name: "data dir last", dataDir: "tok-datadir", wantToken: "tok-datadir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			cleanEnv(t)
			dir := t.TempDir()
			args := []string{"--server", f.addr}
			if tt.flag != "" {
				args = append(args, "--token-file", writeFile(t, dir, "flag", tt.flag+"\n"))
			}
			t.Setenv("TOLLGATE_TOKEN", tt.env)
			if tt.envFile != "" {
				t.Setenv("TOLLGATE_TOKEN_FILE", writeFile(t, dir, "envfile", tt.envFile+"\n"))
			}
			if tt.dataDir != "" {
				writeFile(t, os.Getenv("TOLLGATE_DATA_DIR"), "operator-token", tt.dataDir+"\n")
			}
			r := runCLI(t, "", append(args, "tenant", "get", "acme")...)
			if r.code != exitOK {
				t.Fatal(r)
			}
			if got, want := authorization(t, f), "Bearer "+tt.wantToken; got != want {
				t.Errorf("authorization = %q, want %q", got, want)
			}
			for _, tok := range []string{tt.flag, tt.env, tt.envFile, tt.dataDir} {
				if tok != "" && strings.Contains(r.stdout+r.stderr, tok) {
					t.Errorf("token %q printed: %v", tok, r)
				}
			}
		})
	}
}

func TestTokenErrors(t *testing.T) {
	t.Run("no token anywhere", func(t *testing.T) {
		f := newFakeServer(t)
		cleanEnv(t)
		r := runCLI(t, "", "--server", f.addr, "tenant", "list")
		if r.code != exitError || !strings.Contains(r.stderr, "operator-token does not exist") || !strings.Contains(r.stderr, "--token-file") {
			t.Fatalf("want exit 1 naming the missing file and the alternatives: %v", r)
		}
		if len(f.recorded()) != 0 {
			t.Error("called the API without a token")
		}
	})
	t.Run("named file missing does not fall through", func(t *testing.T) {
		f := newFakeServer(t)
		cleanEnv(t)
		writeFile(t, os.Getenv("TOLLGATE_DATA_DIR"), "operator-token", "tok-datadir")
		t.Setenv("TOLLGATE_TOKEN_FILE", filepath.Join(t.TempDir(), "nope"))
		r := runCLI(t, "", "--server", f.addr, "tenant", "list")
		if r.code != exitError || len(f.recorded()) != 0 {
			t.Fatalf("want exit 1 and no call: %v", r)
		}
	})
	t.Run("token with a space is refused without quoting it", func(t *testing.T) {
		f := newFakeServer(t)
		cleanEnv(t)
		t.Setenv("TOLLGATE_TOKEN", "tok secret")
		r := runCLI(t, "", "--server", f.addr, "tenant", "list")
		if r.code != exitError || strings.Contains(r.stderr, "tok secret") {
			t.Fatalf("want exit 1 without the token: %v", r)
		}
	})
	t.Run("unauthenticated names the source, not the token", func(t *testing.T) {
		f := newFakeServer(t)
		f.reply("ListTenants", func(proto.Message) (proto.Message, error) {
			return nil, status.Error(codes.Unauthenticated, "invalid admin token")
		})
		r := f.run(t, "tenant", "list")
		if r.code != exitError || !strings.Contains(r.stderr, "invalid admin token") || !strings.Contains(r.stderr, "$TOLLGATE_TOKEN") {
			t.Fatalf("want exit 1 naming $TOLLGATE_TOKEN: %v", r)
		}
		if strings.Contains(r.stdout+r.stderr, testToken) {
			t.Errorf("token printed: %v", r)
		}
	})
}

func TestServerFromEnv(t *testing.T) {
	f := newFakeServer(t)
	cleanEnv(t)
	t.Setenv("TOLLGATE_TOKEN", testToken)
	t.Setenv("TOLLGATE_SERVER", f.addr)
	if r := runCLI(t, "", "tenant", "get", "acme"); r.code != exitOK {
		t.Fatal(r)
	}
	f.only(t, "GetTenant")
}

// With TRACEPARENT (and TRACESTATE) set, every call carries the W3C trace
// context, so the admin API's spans join the caller's trace; a malformed
// one is refused before anything is sent.
func TestTraceContextFromEnv(t *testing.T) {
	f := newFakeServer(t)
	cleanEnv(t)
	t.Setenv("TOLLGATE_TOKEN", testToken)
	t.Setenv("TOLLGATE_SERVER", f.addr)
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	t.Setenv("TRACEPARENT", parent)
	t.Setenv("TRACESTATE", "vendor=x")
	if r := runCLI(t, "", "tenant", "get", "acme"); r.code != exitOK {
		t.Fatal(r)
	}
	c := f.only(t, "GetTenant")
	if got := c.md.Get("traceparent"); len(got) != 1 || got[0] != parent {
		t.Errorf("traceparent %v, want %s", got, parent)
	}
	if got := c.md.Get("tracestate"); len(got) != 1 || got[0] != "vendor=x" {
		t.Errorf("tracestate %v, want vendor=x", got)
	}

	t.Setenv("TRACEPARENT", "not-a-traceparent")
	r := runCLI(t, "", "tenant", "get", "acme")
	if r.code == exitOK || !strings.Contains(r.stderr, "TRACEPARENT") {
		t.Errorf("a malformed TRACEPARENT: exit %d, stderr %q; want a refusal naming it", r.code, r.stderr)
	}
	if n := len(f.recorded()); n != 1 {
		t.Errorf("%d calls, want none after the first", n-1)
	}
}

func TestIsLoopback(t *testing.T) {
	for target, want := range map[string]bool{
		"127.0.0.1:7070":             true,
		"127.8.9.10:7070":            true,
		"localhost:7070":             true,
		"LOCALHOST":                  true,
		"[::1]:7070":                 true,
		"[::ffff:127.0.0.1]:7070":    true,
		"dns:///127.0.0.1:7070":      true,
		"dns:///localhost:7070":      true,
		"passthrough:///[::1]:7070":  true,
		"unix:///run/tollgate.sock":  true,
		"unix:relative.sock":         true,
		"10.0.0.1:7070":              false,
		"admin.example.com:443":      false,
		"localhost.example.com:7070": false,
		"127.0.0.1.nip.io:7070":      false,
		"dns:///admin.example.com":   false,
		"[2001:db8::1]:7070":         false,
		"0.0.0.0:7070":               false,
	} {
		if got := isLoopback(target); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", target, got, want)
		}
	}
}

// TestPlaintextToRemoteRefused checks that the token is not sent in the
// clear off this machine unless --insecure says so.
func TestPlaintextToRemoteRefused(t *testing.T) {
	cleanEnv(t)
	t.Setenv("TOLLGATE_TOKEN", testToken)
	r := runCLI(t, "", "--server", "192.0.2.1:7070", "tenant", "list")
	if r.code != exitUsage {
		t.Fatalf("exit %d, want %d: %v", r.code, exitUsage, r)
	}
	for _, want := range []string{"without TLS", "--tls", "--insecure"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("refusal does not mention %q: %s", want, r.stderr)
		}
	}

	// With --insecure it tries to connect. 192.0.2.1 is TEST-NET-1, so the
	// attempt fails (exit 1) rather than being refused (exit 2).
	r = runCLI(t, "", "--server", "192.0.2.1:7070", "--insecure", "--timeout", "300ms", "tenant", "list")
	if r.code != exitError || strings.Contains(r.stderr, "refusing") {
		t.Fatalf("--insecure: want a connection failure, got %v", r)
	}

	r = runCLI(t, "", "--server", "192.0.2.1:7070", "--insecure", "--tls", "tenant", "list")
	if r.code != exitUsage || !strings.Contains(r.stderr, "cannot be combined") {
		t.Fatalf("--insecure --tls: want a usage error, got %v", r)
	}
}

func TestConnectionRefusedHint(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	cleanEnv(t)
	t.Setenv("TOLLGATE_TOKEN", testToken)
	r := runCLI(t, "", "--server", addr, "tenant", "list")
	if r.code != exitError || !strings.Contains(r.stderr, "is `tollgate dev` running? (make run)") {
		t.Fatalf("want exit 1 with the tollgate dev hint: %v", r)
	}
}

// TestTLS runs against a server with a certificate from a throwaway CA:
// --tls-ca trusts it, the system roots do not, and a plaintext client fails.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caPEM, cert := testCertificate(t)
	caFile := writeFile(t, dir, "ca.pem", string(caPEM))
	f := newFakeServer(t, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))

	r := f.run(t, "--tls-ca", caFile, "tenant", "get", "acme")
	if r.code != exitOK {
		t.Fatalf("--tls-ca: %v", r)
	}
	if got := authorization(t, f); got != "Bearer "+testToken {
		t.Errorf("authorization over TLS = %q", got)
	}

	for _, tt := range []struct {
		name string
		args []string
	}{
		{"system roots do not know the CA", []string{"--tls"}},
		{"wrong server name", []string{"--tls-ca", caFile, "--tls-server-name", "other.example"}},
		{"plaintext to a TLS server", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := f.run(t, append(tt.args, "--timeout", "5s", "tenant", "get", "acme")...)
			if r.code != exitError {
				t.Fatalf("exit %d, want 1: %v", r.code, r)
			}
		})
	}
	if n := len(f.recorded()); n != 1 {
		t.Errorf("server saw %d calls, want only the trusted one", n)
	}
}

// testCertificate makes a CA and a certificate for 127.0.0.1 signed by it.
func testCertificate(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tollgatectl test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
}
