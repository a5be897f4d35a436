package helm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/extproc/configclient"
	"github.com/tollgate-dev/tollgate/test/testport"
)

// The default install's migration Job and control plane, run as the real
// binary with exactly the rendered arguments and environment (the DSN
// Secret, which the operator makes, becomes a SQLite file; the TLS Secret
// gets certificates for the names the chart's Certificate asks for): the
// schema is migrated, the health port answers the probes, the admin API
// serves TLS to the generated operator token, xDS admits a client with the
// data plane's certificate and refuses one without, and /metrics answers.
func TestDefaultInstallRuns(t *testing.T) {
	bin, err := tollgateBin()
	if err != nil {
		t.Fatal(err)
	}
	admin, xds, health, metrics, web := testport.Free(t), testport.Free(t), testport.Free(t), testport.Free(t), testport.Free(t)
	objs := decode(t, render(t, "--set", fmt.Sprintf(
		"controlplane.ports.admin=%d,controlplane.ports.xds=%d,controlplane.ports.health=%d,metrics.controlplanePort=%d,web.port=%d", admin, xds, health, metrics, web)))

	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	server := find[*certificate](t, objs, release+"-server")
	ca := writeCerts(t, tlsDir, server.Spec.DNSNames)

	secretValues := map[string]string{} // "name/key" → value
	for _, s := range all[*corev1.Secret](objs) {
		for k, v := range s.Data {
			secretValues[s.Name+"/"+k] = string(v)
		}
	}
	env := func(c corev1.Container) []string {
		out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
		for _, e := range c.Env {
			ref := e.ValueFrom.SecretKeyRef
			v, ok := secretValues[ref.Name+"/"+ref.Key]
			if !ok && e.Name == "TOLLGATE_DATABASE" {
				v = "sqlite://" + filepath.Join(dir, "tollgate.db") // the operator's DSN Secret
			} else if !ok {
				t.Fatalf("%s reads %s from Secret %s, which the render lacks", c.Name, e.Name, ref.Name)
			}
			out = append(out, e.Name+"="+v)
		}
		return out
	}
	args := func(c corev1.Container) []string {
		var out []string
		for _, a := range c.Args {
			out = append(out, strings.ReplaceAll(a, "/etc/tollgate/tls", tlsDir))
		}
		return out
	}

	job := find[*batchv1.Job](t, objs, release+"-migrate").Spec.Template.Spec.Containers[0]
	migrate := exec.Command(bin, args(job)...)
	migrate.Env = env(job)
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("the migration Job's command: %v\n%s", err, out)
	}

	cp := find[*appsv1.Deployment](t, objs, release+"-controlplane").Spec.Template.Spec.Containers[0]
	cpArgs := args(cp)
	ctx, cancel := context.WithCancel(t.Context())
	cmd := exec.CommandContext(ctx, bin, cpArgs...)
	cmd.Env = env(cp)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		err := cmd.Wait() // context.Canceled even after a clean exit: the exit status tells
		if cmd.ProcessState == nil || !cmd.ProcessState.Success() {
			t.Errorf("the control plane did not stop cleanly on SIGTERM (%v):\n%s", err, logs)
		}
	})

	hc := dial(t, fmt.Sprintf("127.0.0.1:%d", health), insecure.NewCredentials())
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := healthpb.NewHealthClient(hc).Check(t.Context(), &healthpb.HealthCheckRequest{})
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the probes' health port is not SERVING after 30s (%v %v); control plane log:\n%s", r, err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}

	adminConn := dial(t, fmt.Sprintf("127.0.0.1:%d", admin), credentials.NewTLS(&tls.Config{
		RootCAs: ca.pool, ServerName: release + "-admin." + namespace + ".svc", MinVersion: tls.VersionTLS12,
	}))
	tokenCtx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+secretValues[release+"-operator-token/operator-token"])
	if _, err := adminv1.NewTenantServiceClient(adminConn).ListTenants(tokenCtx, &adminv1.ListTenantsRequest{}); err != nil {
		t.Errorf("the admin API with the generated operator token, over TLS: %v", err)
	}

	xdsAddr := fmt.Sprintf("127.0.0.1:%d", xds)
	xdsName := release + "-xds." + namespace + ".svc"
	withCert := dial(t, xdsAddr, credentials.NewTLS(&tls.Config{
		RootCAs: ca.pool, ServerName: xdsName, Certificates: []tls.Certificate{ca.client}, MinVersion: tls.VersionTLS12,
	}))
	client := configclient.New(withCert, "extproc-chart-test", slog.New(slog.DiscardHandler))
	syncCtx, stopSync := context.WithCancel(t.Context())
	defer stopSync()
	go client.Run(syncCtx)
	select {
	case <-client.Ready():
	case <-time.After(20 * time.Second):
		t.Errorf("no config sync over mutual TLS within 20s; control plane log:\n%s", logs)
	}
	// Without the data plane's certificate the TLS handshake fails, so no
	// call reaches a service; with it, a call reaches the server (which
	// has no health service on the xDS port).
	withoutCert := dial(t, xdsAddr, credentials.NewTLS(&tls.Config{RootCAs: ca.pool, ServerName: xdsName, MinVersion: tls.VersionTLS12}))
	if _, err := healthpb.NewHealthClient(withoutCert).Check(t.Context(), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("xDS without a client certificate: %v, want the connection refused (Unavailable)", err)
	}
	if _, err := healthpb.NewHealthClient(withCert).Check(t.Context(), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("xDS with the client certificate: %v, want a call that reaches the server (Unimplemented)", err)
	}

	// The web console answers over TLS with the certificate of its Service
	// name.
	webClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: ca.pool, ServerName: release + "-web." + namespace + ".svc", MinVersion: tls.VersionTLS12,
	}}}
	resp, err := webClient.Get(fmt.Sprintf("https://127.0.0.1:%d/signin", web))
	if err != nil {
		t.Fatalf("the web console over TLS: %v", err)
	}
	_ = resp.Body.Close() // only the status matters
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the web console's sign-in page: %s", resp.Status)
	}

	resp, err = http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close() // read in full; nothing to lose
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Errorf("/metrics: %s, %d bytes", resp.Status, len(body))
	}
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() }) // the test is over; a failed close loses nothing
	return conn
}

// testCA is what cert-manager would issue: a CA, the server certificate in
// dir (tls.crt, tls.key, ca.crt, as in its Secret) and a client certificate.
type testCA struct {
	pool   *x509.CertPool
	client tls.Certificate
}

func writeCerts(t *testing.T, dir string, serverNames []string) testCA {
	t.Helper()
	caKey, caCert, caDER := issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "tollgate-ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	serverKey, _, serverDER := issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: serverNames[0]}, DNSNames: serverNames,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, caCert, caKey)
	clientKey, _, clientDER := issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "tollgate-dataplane"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, caCert, caKey)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	keyPEM := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	certPEM := func(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}) }
	for name, data := range map[string][]byte{"tls.crt": certPEM(serverDER), "tls.key": keyPEM(serverKey), "ca.crt": certPEM(caDER)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	client, err := tls.X509KeyPair(certPEM(clientDER), keyPEM(clientKey))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return testCA{pool: pool, client: client}
}

var serial int64 // certificates are issued by one test goroutine

func issue(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, der
}

// syncBuffer collects a process's stderr for failure messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
