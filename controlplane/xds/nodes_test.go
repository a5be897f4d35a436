package xds_test

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate-dev/tollgate/controlplane/ir"
	"github.com/tollgate-dev/tollgate/controlplane/xds"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
)

// sharedPort is the listener port of xdstranslate.DefaultOptions.
const sharedPort = 10000

// servePublisher serves p over xDS on 127.0.0.1:0 and returns a client.
func servePublisher(t *testing.T, p *xds.Publisher) *grpc.ClientConn {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv := grpc.NewServer()
	xds.Register(ctx, srv, p)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }() // returns when the test stops the server
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func publish(t *testing.T, p *xds.Publisher, g *ir.Gateway) {
	t.Helper()
	envoy, err := xdstranslate.TranslateEnvoy(g, xdstranslate.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := xdstranslate.TranslateConfig(g, plainOpen)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(context.Background(), envoy, cfg, nil); err != nil {
		t.Fatal(err)
	}
}

// envoyNode is an Envoy's ADS stream: node sent on the first request only.
type envoyNode struct {
	t      *testing.T
	id     string
	node   *corev3.Node
	cancel context.CancelFunc
	ads    discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	sent   bool
	// last response of each type.
	last map[string]*discoverygrpc.DiscoveryResponse
}

// withMetadata is a node whose bootstrap metadata is tollgate: value.
func withMetadata(id string, value any) *corev3.Node {
	n := &corev3.Node{Id: id, Cluster: "tollgate"}
	if value != nil {
		md, err := structpb.NewStruct(map[string]any{xdstranslate.MetadataNamespace: value})
		if err != nil {
			panic(err)
		}
		n.Metadata = md
	}
	return n
}

func connectNode(t *testing.T, conn *grpc.ClientConn, node *corev3.Node) *envoyNode {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	ads, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := &envoyNode{t: t, id: node.GetId(), node: node, cancel: cancel, ads: ads, last: map[string]*discoverygrpc.DiscoveryResponse{}}
	t.Cleanup(cancel)
	return e
}

func (e *envoyNode) send(r *discoverygrpc.DiscoveryRequest) {
	e.t.Helper()
	if !e.sent {
		r.Node, e.sent = e.node, true
	}
	if err := e.ads.Send(r); err != nil {
		e.t.Fatal(err)
	}
}

// subscribe asks for every Envoy type and reads the three responses.
func (e *envoyNode) subscribe() {
	e.t.Helper()
	for _, typ := range xds.EnvoyTypes {
		e.send(&discoverygrpc.DiscoveryRequest{TypeUrl: typ, ResourceNames: resourceNamesOf(typ)})
	}
	for range xds.EnvoyTypes {
		e.recv()
	}
}

func (e *envoyNode) recv() *discoverygrpc.DiscoveryResponse {
	e.t.Helper()
	resp, err := recvWithin(e.ads, 10*time.Second)
	if err != nil {
		e.t.Fatalf("node %s: %v", e.id, err)
	}
	e.last[resp.GetTypeUrl()] = resp
	return resp
}

// ackAll ACKs the last response of each type.
func (e *envoyNode) ackAll() {
	e.t.Helper()
	for _, typ := range xds.EnvoyTypes {
		r := e.last[typ]
		e.send(&discoverygrpc.DiscoveryRequest{TypeUrl: typ, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce(), ResourceNames: resourceNamesOf(typ)})
	}
}

// listenPort is the port of the client-facing listener last received.
func (e *envoyNode) listenPort() uint32 {
	e.t.Helper()
	ls := decodeAll[*listenerv3.Listener](e.t, e.last[resource.ListenerType])
	if len(ls) != 1 || ls[0].GetName() != xdstranslate.ListenerName {
		e.t.Fatalf("node %s got listeners %v", e.id, names(ls))
	}
	return ls[0].GetAddress().GetSocketAddress().GetPortValue()
}

func (e *envoyNode) version(typ string) string { return e.last[typ].GetVersionInfo() }

// A node whose bootstrap metadata names a listen port gets the shared
// configuration with its listener on that port, at versions of its own, and
// is in step once it accepts those; other nodes share the default listener.
func TestNodesWithAListenPortOfTheirOwn(t *testing.T) {
	p := xds.NewPublisher(slog.New(slog.DiscardHandler))
	g := bigGateway(1, 1, 1)
	publish(t, p, g)
	conn := servePublisher(t, p)

	shared := connectNode(t, conn, withMetadata("envoy-shared", nil))
	edge1 := connectNode(t, conn, withMetadata("edge-1", map[string]any{xdstranslate.NodeListenPortKey: 10001}))
	edge2 := connectNode(t, conn, withMetadata("edge-2", map[string]any{xdstranslate.NodeListenPortKey: 10002}))
	nodes := []*envoyNode{shared, edge1, edge2}
	for _, n := range nodes {
		n.subscribe()
	}
	for n, want := range map[*envoyNode]uint32{shared: sharedPort, edge1: 10001, edge2: 10002} {
		if got := n.listenPort(); got != want {
			t.Errorf("node %s listens on %d, want %d", n.id, got, want)
		}
	}
	// Listener versions are the hash of each one's listener; routes and
	// clusters are the same resources at the same versions.
	if v := []string{shared.version(resource.ListenerType), edge1.version(resource.ListenerType), edge2.version(resource.ListenerType)}; v[0] == v[1] || v[1] == v[2] || v[0] == v[2] {
		t.Errorf("listener versions %v: want one per port", v)
	}
	for _, typ := range []string{resource.RouteType, resource.ClusterType} {
		if shared.version(typ) != edge1.version(typ) || shared.version(typ) != edge2.version(typ) {
			t.Errorf("%s versions differ between nodes: %s %s %s", typ, shared.version(typ), edge1.version(typ), edge2.version(typ))
		}
	}
	if st := p.Status(); !strings.HasPrefix(st.Version, shared.version(resource.ListenerType)+".") {
		t.Errorf("status version %s is not the shared snapshot's (listeners %s)", st.Version, shared.version(resource.ListenerType))
	}

	// Each node is in step once it ACKs its own versions.
	for _, n := range nodes {
		if p.Accepted(n.id) {
			t.Fatalf("node %s in step before any ACK", n.id)
		}
		n.ackAll()
	}
	for _, n := range nodes {
		eventually(t, 10*time.Second, "node "+n.id+" is in step", func() bool { return p.Accepted(n.id) })
	}
	st := p.Status()
	for _, n := range nodes {
		want := map[string]uint32{"envoy-shared": 0, "edge-1": 10001, "edge-2": 10002}[n.id]
		if ns := nodeStateOf(st, n.id); !ns.Current || !ns.Connected || !ns.Envoy || ns.ListenPort != want {
			t.Errorf("node state of %s: %+v, want current on port %d", n.id, ns, want)
		}
	}
	if len(st.Errors) != 0 {
		t.Errorf("status errors %v", st.Errors)
	}

	// A node that accepts the shared listener when it asked for its own
	// port does not run what it is served.
	liar := connectNode(t, conn, withMetadata("edge-liar", map[string]any{xdstranslate.NodeListenPortKey: 10009}))
	liar.subscribe()
	liar.last[resource.ListenerType] = shared.last[resource.ListenerType]
	liar.ackAll()
	eventually(t, 10*time.Second, "the liar's ACKs are seen", func() bool {
		return p.Acked(liar.id, resource.ListenerType) == shared.version(resource.ListenerType)
	})
	if p.Accepted(liar.id) {
		t.Error("a node with its own port is in step with the shared listener's version")
	}
	liar.cancel()

	// A new model: every node gets new clusters and routes (its listener
	// is unchanged), and is behind until it ACKs them.
	before := map[string]map[string]string{}
	for _, n := range nodes {
		before[n.id] = map[string]string{resource.ListenerType: n.version(resource.ListenerType),
			resource.RouteType: n.version(resource.RouteType), resource.ClusterType: n.version(resource.ClusterType)}
	}
	g.Models = append(g.Models, g.Models[0])
	g.Models[1].ID[0], g.Models[1].Name = 9, "model-second"
	g.Sort()
	publish(t, p, g)
	for _, n := range nodes {
		for n.version(resource.RouteType) == before[n.id][resource.RouteType] || n.version(resource.ClusterType) == before[n.id][resource.ClusterType] {
			n.recv()
		}
		if got := len(decodeAll[*clusterv3.Cluster](t, n.last[resource.ClusterType])); got != 2 {
			t.Errorf("node %s got %d clusters after adding a model, want 2", n.id, got)
		}
		if p.Accepted(n.id) {
			t.Errorf("node %s in step before it ACKed the new clusters", n.id)
		}
		n.ackAll()
	}
	for _, n := range nodes {
		eventually(t, 10*time.Second, "node "+n.id+" is in step again", func() bool { return p.Accepted(n.id) })
		// The same listener, translated again, has the same version.
		if n.version(resource.ListenerType) != before[n.id][resource.ListenerType] {
			t.Errorf("node %s was sent listener version %s after %s for the same listener", n.id, n.version(resource.ListenerType), before[n.id][resource.ListenerType])
		}
		if want := map[string]uint32{"envoy-shared": sharedPort, "edge-1": 10001, "edge-2": 10002}[n.id]; n.listenPort() != want {
			t.Errorf("node %s moved to port %d", n.id, n.listenPort())
		}
	}

	// edge-1 goes and comes back asking for another port: the new port.
	edge1.cancel()
	eventually(t, 10*time.Second, "edge-1 is forgotten", func() bool { return !slices.Contains(p.Status().Nodes, edge1.id) })
	again := connectNode(t, conn, withMetadata("edge-1", map[string]any{xdstranslate.NodeListenPortKey: 10003}))
	again.subscribe()
	if got := again.listenPort(); got != 10003 {
		t.Errorf("edge-1 reconnected with port 10003 listens on %d", got)
	}
	if p.Accepted(again.id) {
		t.Error("edge-1 in step again before any ACK")
	}
	again.ackAll()
	eventually(t, 10*time.Second, "edge-1 is in step again", func() bool { return p.Accepted(again.id) })
}

// A malformed listen port is refused: the node is served the shared
// listener, and the status says why while the node is connected.
func TestNodeMetadataRefused(t *testing.T) {
	p := xds.NewPublisher(slog.New(slog.DiscardHandler))
	publish(t, p, bigGateway(1, 1, 1))
	conn := servePublisher(t, p)
	for name, tc := range map[string]struct {
		value any
		want  string
	}{
		"out of range": {map[string]any{xdstranslate.NodeListenPortKey: 70000}, "listen_port is 70000, not a port number from 1 to 65535"},
		"zero":         {map[string]any{xdstranslate.NodeListenPortKey: 0}, "listen_port is 0, not a port number"},
		"fraction":     {map[string]any{xdstranslate.NodeListenPortKey: 10001.5}, "listen_port is 10001.5, not a port number"},
		"a string":     {map[string]any{xdstranslate.NodeListenPortKey: "10001"}, `listen_port is "10001", not a port number`},
		"misspelt":     {map[string]any{"listen_prot": 10001}, "node.metadata.tollgate.listen_prot is not a known field"},
		"not a map":    {10001, "node.metadata.tollgate is 10001, not a map"},
	} {
		t.Run(name, func(t *testing.T) {
			id := "bad-" + strings.ReplaceAll(name, " ", "-")
			n := connectNode(t, conn, withMetadata(id, tc.value))
			n.subscribe()
			if got := n.listenPort(); got != sharedPort {
				t.Errorf("listens on %d, want the shared %d", got, sharedPort)
			}
			line := func() string {
				for _, e := range p.Status().Errors {
					if strings.HasPrefix(e, "node "+id+": ") {
						return e
					}
				}
				return ""
			}
			if got := line(); !strings.Contains(got, tc.want) || !strings.Contains(got, "served the shared listener") {
				t.Errorf("status error %q, want one containing %q", got, tc.want)
			}
			n.ackAll()
			eventually(t, 10*time.Second, "the node is in step with the shared listener", func() bool { return p.Accepted(id) })
			n.cancel()
			eventually(t, 10*time.Second, "the node's error goes with it", func() bool { return line() == "" })
		})
	}
}
