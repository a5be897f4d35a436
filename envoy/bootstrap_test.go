package envoy

import (
	"flag"
	"os"
	"path/filepath"
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
		"own listen port":   {NodeID: "edge-2", AdminPort: 9902, ListenPort: 10002, XDSHost: "127.0.0.1", XDSPort: 7071, ExtProcHost: "127.0.0.1", ExtProcPort: 7073},
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
			// The listen port is node metadata for the control plane
			// (controlplane/xds reads it by these names), absent unless set.
			port := b.GetNode().GetMetadata().GetFields()[xdstranslate.MetadataNamespace].GetStructValue().GetFields()[xdstranslate.NodeListenPortKey]
			if got := port.GetNumberValue(); got != float64(p.ListenPort) {
				t.Errorf("node.metadata.%s.%s = %v, want %d", xdstranslate.MetadataNamespace, xdstranslate.NodeListenPortKey, port, p.ListenPort)
			}
			if p.ListenPort == 0 && b.GetNode().GetMetadata() != nil {
				t.Errorf("node metadata %v without a listen port", b.GetNode().GetMetadata())
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

func TestBootstrapRefusesTheAdminPortAsListenPort(t *testing.T) {
	_, err := Render(Params{NodeID: "x", AdminPort: 9901, ListenPort: 9901, XDSHost: "127.0.0.1", XDSPort: 7071, ExtProcSocket: "/s"})
	if err == nil || !strings.Contains(err.Error(), "listen port and the admin port are both 9901") {
		t.Errorf("err = %v", err)
	}
}

var update = flag.Bool("update", false, "rewrite the golden bootstraps in testdata")

// The rendered bootstraps, whole: a change to the template shows in review
// as a change to these files (go test ./envoy -update rewrites them).
func TestBootstrapGolden(t *testing.T) {
	for name, p := range map[string]Params{
		"shared-listener": {NodeID: "envoy-0", AdminPort: 9901, XDSHost: "127.0.0.1", XDSPort: 7071, ExtProcSocket: "/run/tollgate/extproc.sock"},
		"own-listen-port": {NodeID: "edge-2", AdminPort: 9902, ListenPort: 10002, XDSHost: "127.0.0.1", XDSPort: 7071, ExtProcHost: "127.0.0.1", ExtProcPort: 7073},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Render(p)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".yaml")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./envoy -update writes it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("Render(%+v) differs from %s (go test ./envoy -update rewrites it):\n%s", p, path, got)
			}
		})
	}
}
