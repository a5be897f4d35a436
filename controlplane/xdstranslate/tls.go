package xdstranslate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// upstreamTLS verifies the provider's certificate for host (Envoy checks no
// name unless told to), against the system trust store or TrustedCAFile.
func upstreamTLS(host string, h2 bool, o Options) *corev3.TransportSocket {
	validation := &tlsv3.CertificateValidationContext{
		MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
			SanType: tlsv3.SubjectAltNameMatcher_DNS,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: host}},
		}},
	}
	if o.TrustedCAFile != "" {
		validation.TrustedCa = &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: o.TrustedCAFile}}
	} else {
		validation.SystemRootCerts = &tlsv3.CertificateValidationContext_SystemRootCerts{}
	}
	alpn := []string{"http/1.1"}
	if h2 {
		alpn = []string{"h2", "http/1.1"}
	}
	ctx := &tlsv3.UpstreamTlsContext{
		Sni: host,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:         alpn,
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: validation},
		},
	}
	return &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)},
	}
}
