package fakeprovider

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"
)

// testCA is the process's test CA and the one server certificate it signs;
// every TLS fake shares them, so a client trusts all fakes by trusting
// CACertPEM once.
var testCA struct {
	once   sync.Once
	err    error
	pem    []byte
	pool   *x509.CertPool
	server tls.Certificate
}

// CACertPEM returns the PEM of the CA that signs the TLS fakes'
// certificates, generating it on first use.
func CACertPEM() ([]byte, error) {
	testCA.once.Do(makeCA)
	return testCA.pem, testCA.err
}

func serverTLS() (*tls.Config, *x509.CertPool, error) {
	testCA.once.Do(makeCA)
	if testCA.err != nil {
		return nil, nil, testCA.err
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{testCA.server},
		NextProtos:   []string{"h2", "http/1.1"},
	}
	return cfg, testCA.pool, nil
}

func clientTLS(pool *x509.CertPool) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
}

func makeCA() {
	testCA.err = func() error {
		now := time.Now()
		caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return fmt.Errorf("fakeprovider: CA key: %w", err)
		}
		ca := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "Tollgate fake provider test CA"},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(7 * 24 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLenZero:        true,
		}
		caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
		if err != nil {
			return fmt.Errorf("fakeprovider: CA certificate: %w", err)
		}
		if ca, err = x509.ParseCertificate(caDER); err != nil {
			return fmt.Errorf("fakeprovider: CA certificate: %w", err)
		}

		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return fmt.Errorf("fakeprovider: server key: %w", err)
		}
		leaf := &x509.Certificate{
			SerialNumber: big.NewInt(2),
			Subject:      pkix.Name{CommonName: "127.0.0.1"},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(7 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		}
		leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
		if err != nil {
			return fmt.Errorf("fakeprovider: server certificate: %w", err)
		}

		testCA.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
		testCA.pool = x509.NewCertPool()
		testCA.pool.AddCert(ca)
		testCA.server = tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: key}
		return nil
	}()
}
