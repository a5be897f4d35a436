package notify_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	smtpd "github.com/emersion/go-smtp"

	"github.com/tollgate-dev/tollgate/controlplane/notify"
)

// receiver is a local webhook receiver that answers the first failures
// requests with failStatus, then 200, and keeps what it accepted. It checks
// every request's signature, as a real receiver would.
type receiver struct {
	*httptest.Server
	mu         sync.Mutex
	secret     []byte
	failures   int
	failStatus int
	requests   int
	ids        []string // delivery id of every request, accepted or not
	accepted   [][]byte // bodies answered with 200
	badSig     int
}

func newReceiver(t *testing.T, failures, failStatus int) *receiver {
	r := &receiver{failures: failures, failStatus: failStatus}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.requests++
		r.ids = append(r.ids, req.Header.Get(notify.HeaderDeliveryID))
		if err := notify.Verify(r.secret, body, req.Header.Get(notify.HeaderSignature), time.Now(), 24*time.Hour); err != nil {
			r.badSig++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.requests <= r.failures {
			w.WriteHeader(r.failStatus)
			return
		}
		r.accepted = append(r.accepted, body)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) state() (requests int, ids []string, accepted [][]byte, badSig int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests, append([]string(nil), r.ids...), append([][]byte(nil), r.accepted...), r.badSig
}

// mailSink is a local SMTP server offering STARTTLS that refuses the first
// failures messages with a temporary error (451), then keeps them.
type mailSink struct {
	addr     string
	roots    *x509.CertPool
	mu       sync.Mutex
	failures int
	messages int // DATA commands seen
	accepted []sunkMail
}

type sunkMail struct {
	from string
	to   []string
	data []byte
	tls  bool
}

func newMailSink(t *testing.T, failures int) *mailSink {
	return newMailSinkTLS(t, failures, sinkStartTLS)
}

// How a sink offers TLS.
const (
	sinkStartTLS = iota // STARTTLS offered
	sinkPlain           // no TLS at all
	sinkImplicit        // TLS from the first byte
)

func newMailSinkTLS(t *testing.T, failures, mode int) *mailSink {
	cert, roots := selfSigned(t)
	s := &mailSink{failures: failures, roots: roots}
	srv := smtpd.NewServer(smtpd.BackendFunc(func(c *smtpd.Conn) (smtpd.Session, error) {
		return &sinkSession{sink: s, conn: c}, nil
	}))
	srv.Domain = "sink.test"
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	switch mode {
	case sinkStartTLS:
		srv.TLSConfig = tlsConf
	case sinkImplicit:
		lis = tls.NewListener(lis, tlsConf)
	}
	s.addr = lis.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; err != nil && !errors.Is(err, smtpd.ErrServerClosed) {
			t.Errorf("SMTP sink: %v", err)
		}
	})
	return s
}

func (s *mailSink) state() (messages int, accepted []sunkMail) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.messages, append([]sunkMail(nil), s.accepted...)
}

type sinkSession struct {
	sink *mailSink
	conn *smtpd.Conn
	from string
	to   []string
}

func (s *sinkSession) Reset()        { s.from, s.to = "", nil }
func (s *sinkSession) Logout() error { return nil }
func (s *sinkSession) Mail(from string, _ *smtpd.MailOptions) error {
	s.from = from
	return nil
}

func (s *sinkSession) Rcpt(to string, _ *smtpd.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.sink.mu.Lock()
	defer s.sink.mu.Unlock()
	s.sink.messages++
	if s.sink.messages <= s.sink.failures {
		return &smtpd.SMTPError{Code: 451, EnhancedCode: smtpd.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.sink.accepted = append(s.sink.accepted, sunkMail{from: s.from, to: s.to, data: data, tls: isTLS})
	return nil
}

// selfSigned makes a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sink.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
