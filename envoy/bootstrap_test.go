package envoy

import (
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3" // types named in the bootstrap
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
)

// The rendered bootstrap must be a valid Envoy Bootstrap, decoded strictly
// (an unknown or misspelt field fails), for every combination of options.
func TestBootstrapIsValidEnvoyConfig(t *testing.T) {
	for name, p := range map[string]Params{
		"loopback ext_proc": {NodeID: "envoy-0", AdminPort: 9901, XDSHost: "127.0.0.1", XDSPort: 7071, ExtProcHost: "127.0.0.1", ExtProcPort: 7072},
		"socket and mTLS": {NodeID: `pod "a"`, AdminPort: 9901, XDSHost: "tollgate-xds.tollgate.svc", XDSPort: 7071, ExtProcSocket: "/run/tollgate/extproc.sock",
			XDSTLS: &TLSFiles{CertFile: "/tls/tls.crt", KeyFile: "/tls/tls.key", CAFile: "/tls/ca.crt", ServerName: "tollgate-xds.tollgate.svc"}},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := Render(p)
			if err != nil {
				t.Fatal(err)
			}
			js, err := yaml.YAMLToJSON(out)
			if err != nil {
				t.Fatalf("not YAML: %v\n%s", err, out)
			}
			var b bootstrapv3.Bootstrap
			if err := protojson.Unmarshal(js, &b); err != nil {
				t.Fatalf("not an Envoy bootstrap: %v\n%s", err, out)
			}
			if err := b.ValidateAll(); err != nil {
				t.Fatalf("invalid bootstrap: %v", err)
			}
			if b.GetNode().GetId() != p.NodeID {
				t.Errorf("node id = %q, want %q", b.GetNode().GetId(), p.NodeID)
			}
			names := map[string]bool{}
			for _, c := range b.GetStaticResources().GetClusters() {
				names[c.GetName()] = true
			}
			// The ext_proc filters the control plane emits name this cluster.
			if !names[xdstranslate.ExtProcCluster] || !names["tollgate_xds"] {
				t.Errorf("static clusters %v lack %s or tollgate_xds", names, xdstranslate.ExtProcCluster)
			}
			if (p.XDSTLS != nil) != strings.Contains(string(out), "UpstreamTlsContext") {
				t.Error("mutual TLS to xDS present when not asked for, or missing when asked for")
			}
		})
	}
}

func TestBootstrapRefusesMissingParameters(t *testing.T) {
	_, err := Render(Params{NodeID: "x"})
	if err == nil || !strings.Contains(err.Error(), "xDS host") || !strings.Contains(err.Error(), "ext_proc") {
		t.Errorf("err = %v", err)
	}
}
