package testdataplane

import (
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/envoy"
)

func TestBootstrapIsRead(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	cert := ca.issue(t, "tollgate-xds.tollgate.svc")
	certFile, keyFile := writeKeyPair(t, dir, "tls", cert)

	for name, tc := range map[string]struct {
		p          envoy.Params
		extProc    string
		xdsTLS     bool
		listenPort float64
	}{
		"loopback ext_proc": {
			p:       envoy.Params{NodeID: "envoy-0", AdminPort: 9901, XDSHost: "127.0.0.1", XDSPort: 7071, ExtProcHost: "127.0.0.1", ExtProcPort: 7072},
			extProc: "127.0.0.1:7072",
		},
		"own listen port": {
			p:          envoy.Params{NodeID: "envoy-0", AdminPort: 9901, ListenPort: 10001, XDSHost: "127.0.0.1", XDSPort: 7071, ExtProcHost: "127.0.0.1", ExtProcPort: 7072},
			extProc:    "127.0.0.1:7072",
			listenPort: 10001,
		},
		"socket and mTLS": {
			p: envoy.Params{NodeID: "pod-a", AdminPort: 9901, XDSHost: "tollgate-xds.tollgate.svc", XDSPort: 7071, ExtProcSocket: "/run/tollgate/extproc.sock",
				XDSTLS: &envoy.TLSFiles{CertFile: certFile, KeyFile: keyFile, CAFile: ca.file(t), ServerName: "tollgate-xds.tollgate.svc"}},
			extProc: "/run/tollgate/extproc.sock",
			xdsTLS:  true,
		},
	} {
		t.Run(name, func(t *testing.T) {
			raw, err := envoy.Render(tc.p)
			if err != nil {
				t.Fatal(err)
			}
			b, err := parseBootstrap(raw)
			if err != nil {
				t.Fatal(err)
			}
			if b.nodeID != tc.p.NodeID || b.xdsCluster != "tollgate_xds" || !b.setNodeOnFirstMessageOnly || b.adminAddress != "127.0.0.1:9901" {
				t.Errorf("bootstrap read as %+v", b)
			}
			// node.metadata is the control plane's: kept to be sent with
			// the node, not interpreted.
			if got := b.nodeMetadata.GetFields()["tollgate"].GetStructValue().GetFields()["listen_port"].GetNumberValue(); got != tc.listenPort {
				t.Errorf("node metadata listen_port %v, want %v", got, tc.listenPort)
			}
			ep := b.static["tollgate_extproc"]
			if ep == nil || ep.protocol != protoHTTP2 {
				t.Fatalf("ext_proc cluster %+v: want explicit HTTP/2", ep)
			}
			h := newCluster(ep).hosts[0]
			if h.address() != tc.extProc {
				t.Errorf("ext_proc address %q, want %q", h.address(), tc.extProc)
			}
			xds := newCluster(b.static["tollgate_xds"]).hosts[0]
			if (xds.cfg.tls != nil) != tc.xdsTLS {
				t.Errorf("xDS TLS %v, want %v", xds.cfg.tls != nil, tc.xdsTLS)
			}
			if tc.xdsTLS && (xds.cfg.tls.sni != "tollgate-xds.tollgate.svc" || len(xds.cfg.tls.certs) != 1 || xds.cfg.tls.roots == nil) {
				t.Errorf("xDS TLS %+v", xds.cfg.tls)
			}
		})
	}
}

func TestBootstrapRefusesWhatIsNotModelled(t *testing.T) {
	raw, err := envoy.Render(envoy.Params{NodeID: "envoy-0", AdminPort: 9901, XDSHost: "127.0.0.1", XDSPort: 7071, ExtProcHost: "127.0.0.1", ExtProcPort: 7072})
	if err != nil {
		t.Fatal(err)
	}
	withFlush := string(raw) + "stats_flush_interval: 10s\n"
	_, err = parseBootstrap([]byte(withFlush))
	if err == nil || !strings.Contains(err.Error(), "stats_flush_interval") {
		t.Errorf("err = %v, want a refusal naming stats_flush_interval", err)
	}
	_, err = parseBootstrap([]byte(string(raw) + "no_such_field: 1\n"))
	if err == nil || !strings.Contains(err.Error(), "no_such_field") {
		t.Errorf("err = %v, want a strict decoding error", err)
	}
}
