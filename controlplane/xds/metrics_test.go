package xds_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
	"github.com/tollgate-dev/tollgate/extproc/configclient"
	"github.com/tollgate-dev/tollgate/telemetry"
)

// The xDS metrics follow a config client: its stream and node while it is
// connected, the resources served, each reconciliation, and the time
// changes take to reach it.
func TestXDSMetrics(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		tel, err := telemetry.New(t.Context(), telemetry.Options{Service: "xds-test"})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tel.Shutdown(context.Background()) }()
		gather := func() telemetry.Families {
			fams, err := tel.Gather()
			if err != nil {
				t.Fatal(err)
			}
			return fams
		}
		p := startPlaneWith(t, st, tel.Meters())
		client := configclient.New(p.conn, "extproc-metrics", slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { client.Run(ctx); close(done) }()
		// An Envoy on the state-of-the-world protocol too: the two servers
		// number their streams each from 1, and both are counted.
		adsCtx, stopADS := context.WithCancel(p.ctx)
		ads, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(p.conn).StreamAggregatedResources(adsCtx)
		if err != nil {
			t.Fatal(err)
		}
		if err := ads.Send(&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: "envoy-metrics"}, TypeUrl: resource.ClusterType}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "both nodes connect", func() bool {
			f := gather()
			n, _ := f.Sum("tollgate_xds_nodes_connected")
			sotw, _ := f.Sum("tollgate_xds_streams", "tollgate_xds_protocol", "sotw")
			delta, _ := f.Sum("tollgate_xds_streams", "tollgate_xds_protocol", "delta")
			return n == 2 && sotw == 1 && delta >= 1
		})
		_, key, _ := p.setup()
		hash := xdstranslate.KeyResourceName(secret.Hash(key.GetSecret()))
		eventually(t, 5*time.Second, "the key reaches ext_proc", func() bool { return client.Key(hash) != nil })
		eventually(t, 5*time.Second, "a push to the open stream is measured", func() bool {
			n, _ := gather().Sum("tollgate_xds_push_duration_seconds", "tollgate_xds_type", "Key")
			return n >= 1
		})
		fams := gather()
		if n, ok := fams.Sum("tollgate_xds_resources", "tollgate_xds_type", "Key"); !ok || n != 1 {
			t.Errorf("keys served = %v, want 1", n)
		}
		if n, ok := fams.Sum("tollgate_xds_responses_total", "tollgate_xds_type", "Key"); !ok || n < 1 {
			t.Errorf("key responses = %v", n)
		}
		if n, ok := fams.Sum("tollgate_xds_reconcile_duration_seconds", "tollgate_outcome", "published"); !ok || n < 1 {
			t.Errorf("reconciliations = %v", n)
		}
		if n, ok := fams.Sum("tollgate_xds_config_errors"); !ok || n != 0 {
			t.Errorf("config errors = %v, want 0", n)
		}
		// The Envoy node asked for clusters and never ACKed them: behind,
		// not rejecting. The ext_proc node is neither.
		if n, ok := fams.Sum("tollgate_xds_nodes_behind"); !ok || n != 1 {
			t.Errorf("nodes behind = %v, want 1", n)
		}
		if n, ok := fams.Sum("tollgate_xds_nodes_rejecting"); !ok || n != 0 {
			t.Errorf("nodes rejecting = %v, want 0", n)
		}
		// The status says the same: ext_proc (delta streams) is connected
		// and no Envoy; the Envoy node is connected and not current.
		if ns := nodeStateOf(p.publisher.Status(), "extproc-metrics"); !ns.Connected || ns.Envoy || ns.Current {
			t.Errorf("ext_proc node state %+v", ns)
		}
		if ns := nodeStateOf(p.publisher.Status(), "envoy-metrics"); !ns.Connected || !ns.Envoy || ns.Current {
			t.Errorf("Envoy node state %+v", ns)
		}
		cancel()
		stopADS()
		<-done
		eventually(t, 5*time.Second, "the stream closes", func() bool {
			f := gather()
			n, _ := f.Sum("tollgate_xds_nodes_connected")
			s, _ := f.Sum("tollgate_xds_streams")
			behind, _ := f.Sum("tollgate_xds_nodes_behind")
			return n == 0 && s == 0 && behind == 0
		})
		for _, node := range []string{"extproc-metrics", "envoy-metrics"} {
			eventually(t, 10*time.Second, node+" is shown disconnected", func() bool {
				return !nodeStateOf(p.publisher.Status(), node).Connected
			})
		}
	})
}
