package testdataplane

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// tlsConfig is an UpstreamTlsContext as the harness applies it.
type tlsConfig struct {
	sni  string
	alpn []string
	// roots is nil when there is no validation context: Envoy then does
	// not verify the server's certificate at all.
	roots *x509.CertPool
	// sanExact are DNS names of which the certificate must carry one.
	// Envoy checks no name unless told to (not even the SNI).
	sanExact []string
	certs    []tls.Certificate
}

func buildTLS(c *tlsv3.UpstreamTlsContext) (*tlsConfig, error) {
	out := &tlsConfig{sni: c.GetSni(), alpn: c.GetCommonTlsContext().GetAlpnProtocols()}
	vc := c.GetCommonTlsContext().GetValidationContext()
	if vc != nil {
		switch {
		case vc.GetTrustedCa() != nil:
			var pem []byte
			if f := vc.GetTrustedCa().GetFilename(); f != "" {
				b, err := os.ReadFile(f)
				if err != nil {
					// Envoy refuses the cluster when it cannot load its CA.
					return nil, fmt.Errorf("trusted_ca: %w", err)
				}
				pem = b
			} else {
				pem = []byte(vc.GetTrustedCa().GetInlineString())
			}
			out.roots = x509.NewCertPool()
			if !out.roots.AppendCertsFromPEM(pem) {
				return nil, errors.New("trusted_ca holds no PEM certificate")
			}
		case vc.GetSystemRootCerts() != nil:
			pool, err := x509.SystemCertPool()
			if err != nil {
				return nil, fmt.Errorf("system_root_certs: %w", err)
			}
			out.roots = pool
		}
		for _, m := range vc.GetMatchTypedSubjectAltNames() {
			out.sanExact = append(out.sanExact, m.GetMatcher().GetExact())
		}
	}
	for _, tc := range c.GetCommonTlsContext().GetTlsCertificates() {
		cert, err := tls.LoadX509KeyPair(tc.GetCertificateChain().GetFilename(), tc.GetPrivateKey().GetFilename())
		if err != nil {
			return nil, fmt.Errorf("tls_certificates: %w", err)
		}
		out.certs = append(out.certs, cert)
	}
	return out, nil
}

// clientConfig is the Go TLS configuration for one connection. Go's own
// verification is off because Envoy's rules differ: the chain is checked
// only against the configured roots and names only against the SAN
// matchers.
func (t *tlsConfig) clientConfig() *tls.Config {
	return &tls.Config{
		ServerName:         t.sni,
		NextProtos:         t.alpn,
		Certificates:       t.certs,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection, by Envoy's rules
		VerifyConnection:   t.verify,
	}
}

// verify applies the validation context, naming the failure the way the
// access log's UPSTREAM_TRANSPORT_FAILURE_REASON would.
func (t *tlsConfig) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("TLS_error: peer presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	if t.roots != nil {
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: t.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("TLS_error: CERTIFICATE_VERIFY_FAILED: %w", err)
		}
	}
	if len(t.sanExact) > 0 {
		for _, want := range t.sanExact {
			for _, san := range leaf.DNSNames {
				if dnsNameMatch(want, san) {
					return nil
				}
			}
		}
		return fmt.Errorf("TLS_error: CERTIFICATE_VERIFY_FAILED: no DNS subject alt name of %v matches %v", leaf.DNSNames, t.sanExact)
	}
	return nil
}

// dnsNameMatch is Envoy's DNS SAN match for an exact matcher: equal
// (case-insensitively), or the certificate's "*.example.com" covering one
// label of the configured name.
func dnsNameMatch(want, san string) bool {
	want, san = strings.ToLower(want), strings.ToLower(san)
	if want == san {
		return true
	}
	if rest, ok := strings.CutPrefix(san, "*."); ok {
		if i := strings.IndexByte(want, '.'); i > 0 && want[i+1:] == rest {
			return true
		}
	}
	return false
}
