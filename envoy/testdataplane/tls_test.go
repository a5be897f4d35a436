package testdataplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tollgate-dev/tollgate/controlplane/ir"
	"github.com/tollgate-dev/tollgate/envoy"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tollgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a server certificate for DNS names (and no IP SANs).
func (ca *testCA) issue(t *testing.T, dnsNames ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: dnsNames[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: dnsNames, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca *testCA) file(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsUpstream is a recording HTTPS upstream that speaks h2 and HTTP/1.1.
func tlsUpstream(t *testing.T, cert tls.Certificate) *upstreamServer {
	u := &upstreamServer{}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	u.EnableHTTP2 = true
	u.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	u.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	u.StartTLS()
	t.Cleanup(u.Close)
	return u
}

func TestTLSUpstreamVerifiesCAAndSubjectAltName(t *testing.T) {
	ca := newTestCA(t)
	up := tlsUpstream(t, ca.issue(t, "localhost"))
	port := up.URL[strings.LastIndexByte(up.URL, ':')+1:]

	e := newEnv(t)
	e.opts.TrustedCAFile = ca.file(t)
	tg := &testGateway{}
	// The same server, named two ways: "localhost" is in its certificate,
	// "127.0.0.1" is not (the certificate has no IP SAN), so the SAN check
	// that Envoy applies refuses the second.
	good := tg.provider(ir.KindOpenAI, "https://localhost:"+port)
	bad := tg.provider(ir.KindOpenAI, "https://127.0.0.1:"+port)
	routeGood, _ := tg.model("good", deployment{provider: good, weight: 1})
	routeBad, _ := tg.model("bad", deployment{provider: bad, weight: 1})
	e.proc.script(routeByModel(map[string]string{"good": routeGood, "bad": routeBad}), nil)
	e.start(&tg.g)

	code, _, body := e.post("/v1/chat/completions", `{"model":"good"}`)
	if code != 200 || body != `{"ok":true}` {
		t.Fatalf("good: %d %q", code, body)
	}
	got := up.requests()
	if len(got) != 1 {
		t.Fatalf("upstream got %d requests", len(got))
	}
	if got[0].sni != "localhost" || got[0].protoMajor != 2 || got[0].host != "localhost" {
		t.Errorf("SNI %q, HTTP/%d, host %q; want SNI localhost, h2 by ALPN, auto_host_rewrite to the endpoint's hostname", got[0].sni, got[0].protoMajor, got[0].host)
	}

	code, _, body = e.post("/v1/chat/completions", `{"model":"bad"}`)
	if code != 503 || !strings.Contains(body, "CERTIFICATE_VERIFY_FAILED") {
		t.Fatalf("bad: %d %q, want 503 naming the certificate failure", code, body)
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("the upstream got a request over a connection that failed verification (%d requests)", n)
	}
	line := e.lastAccess(2)
	if f, _ := line["flags"].(string); !strings.Contains(f, "UF") {
		t.Errorf("flags %v, want UF", line["flags"])
	}
	if r, _ := line["upstream_failure"].(string); !strings.Contains(r, "CERTIFICATE_VERIFY_FAILED") {
		t.Errorf("upstream_failure %v", line["upstream_failure"])
	}
}

// Without the test CA the same certificate does not verify against the
// system roots.
func TestTLSUpstreamUntrustedCA(t *testing.T) {
	ca := newTestCA(t)
	up := tlsUpstream(t, ca.issue(t, "localhost"))
	port := up.URL[strings.LastIndexByte(up.URL, ':')+1:]
	e := newEnv(t)
	tg := &testGateway{}
	p := tg.provider(ir.KindOpenAI, "https://localhost:"+port)
	route, _ := tg.model("m", deployment{provider: p, weight: 1})
	e.proc.script(routeByModel(map[string]string{"m": route}), nil)
	e.start(&tg.g)
	if code, _, _ := e.post("/v1/chat/completions", `{"model":"m"}`); code != 503 {
		t.Errorf("status %d, want 503", code)
	}
	if len(up.requests()) != 0 {
		t.Error("a request reached an upstream with an untrusted certificate")
	}
}

// The bootstrap's mutual TLS to the control plane: the harness presents its
// client certificate and checks the server's name against the CA.
func TestXDSOverMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	serverCert := ca.issue(t, "localhost")
	clientCert := ca.issue(t, "envoy-client")
	certFile, keyFile := writeKeyPair(t, dir, "client", clientCert)

	e := newEnv(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	x := startXDSWith(t, grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	})))
	tg, ua, _, routeA, _ := twoModels(t)
	e.proc.script(routeByModel(map[string]string{"a": routeA}), nil)
	x.publish(t, e.translate(&tg.g))
	boot, err := envoy.Render(envoy.Params{
		NodeID: testNodeID, AdminPort: uint16(freePort(t)),
		XDSHost: "localhost", XDSPort: uint16(x.addr.Port), ExtProcSocket: e.proc.socket,
		XDSTLS: &envoy.TLSFiles{CertFile: certFile, KeyFile: keyFile, CAFile: ca.file(t), ServerName: "localhost"},
	})
	if err != nil {
		t.Fatal(err)
	}
	dp, err := New(context.Background(), Config{Bootstrap: boot, Logger: slog.New(slog.NewTextHandler(e.logs, nil)), AccessLog: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dp.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := dp.WaitReady(ctx); err != nil {
		t.Fatalf("%v\n%s", err, e.logs.String())
	}
	e.dp = dp
	if code, _, _ := e.post("/v1/chat/completions", `{"model":"a"}`); code != 200 || len(ua.requests()) != 1 {
		t.Errorf("status %d", code)
	}
}

func writeKeyPair(t *testing.T, dir, name string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
