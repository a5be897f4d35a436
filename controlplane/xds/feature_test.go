package xds_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.opentelemetry.io/otel/metric"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/admin"
	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/controlplane/xds"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
	"github.com/tollgate-dev/tollgate/extproc/configclient"
)

// plane is a control plane on 127.0.0.1:0: the admin API and the xDS server
// on one gRPC server, with the reconciler running.
type plane struct {
	t         *testing.T
	conn      *grpc.ClientConn
	ctx       context.Context // authenticated as the operator
	publisher *xds.Publisher
}

func startPlane(t *testing.T, st *store.Store) *plane {
	t.Helper()
	return startPlaneWith(t, st, nil)
}

// startPlaneWith is startPlane whose xDS server exports its metrics to mp
// (none when nil).
func startPlaneWith(t *testing.T, st *store.Store, mp metric.MeterProvider) *plane {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ring, err := keyring.New(keyring.Key{ID: "k1", Secret: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	op, _ := secret.New(secret.OperatorToken)
	pub := xds.NewPublisher(log)
	opts := xdstranslate.DefaultOptions()
	opts.ListenAddress = "127.0.0.1"
	rec := &xds.Reconciler{Store: st, Keyring: ring, Options: opts, Publisher: pub, Log: log, PollInterval: 50 * time.Millisecond}
	rec.Init()
	adm, err := admin.New(admin.Config{Store: st, Keyring: ring, OperatorToken: op.Plaintext, Logger: log, Changed: rec.Notify})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(adm.UnaryInterceptor()))
	adm.Register(g)
	if mp != nil {
		if err := pub.Instrument(mp); err != nil {
			t.Fatal(err)
		}
	}
	xds.Register(ctx, g, pub)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }() // returns when the test stops the server
	t.Cleanup(g.Stop)
	go rec.Run(ctx)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(configclient.MaxMessageBytes)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &plane{t: t, conn: conn, publisher: pub,
		ctx: metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+op.Plaintext)}
}

// eventually polls cond for up to limit.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v", what, limit)
	return 0
}

func (p *plane) setup() (tenant *adminv1.Tenant, key *adminv1.CreateKeyResponse, model *adminv1.Model) {
	t := p.t
	tn, err := adminv1.NewTenantServiceClient(p.conn).CreateTenant(p.ctx, &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme"}})
	if err != nil {
		t.Fatal(err)
	}
	k, err := adminv1.NewKeyServiceClient(p.conn).CreateKey(p.ctx, &adminv1.CreateKeyRequest{Tenant: "acme", Key: &adminv1.Key{Name: "ci"}})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := adminv1.NewProviderServiceClient(p.conn).CreateProvider(p.ctx, &adminv1.CreateProviderRequest{Provider: &adminv1.Provider{
		Name: "anthropic", Kind: adminv1.ProviderKind_PROVIDER_KIND_ANTHROPIC, BaseUrl: "https://api.anthropic.com", Credential: "sk-ant-secret",
	}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := adminv1.NewModelServiceClient(p.conn).CreateModel(p.ctx, &adminv1.CreateModelRequest{Model: &adminv1.Model{
		Name: "claude", Deployments: []*adminv1.Deployment{{ProviderId: pr.GetProvider().GetId(), UpstreamModel: "claude-sonnet-4-5"}},
		Pricing: &adminv1.Pricing{InputMicrosPerMtok: 3000000, OutputMicrosPerMtok: 15000000},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return tn.GetTenant(), k, m.GetModel()
}

// An ext_proc config client sees keys appear and, once revoked, disappear
// within a second; it holds the provider's credential in clear text.
func TestConfigClientFollowsAdminChanges(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		p := startPlane(t, st)
		client := configclient.New(p.conn, "extproc-test", slog.New(slog.NewTextHandler(os.Stderr, nil)))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go client.Run(ctx)

		tn, key, model := p.setup()
		hash := xdstranslate.KeyResourceName(secret.Hash(key.GetSecret()))
		eventually(t, time.Second, "the new key reaches ext_proc", func() bool { return client.Key(hash) != nil })
		select {
		case <-client.Ready():
		case <-time.After(time.Second):
			t.Fatal("client not ready after its first sync")
		}
		if got := client.Key(hash); got.GetTenantId() != tn.GetId() || got.GetKeyId() != key.GetKey().GetId() {
			t.Errorf("key = %v", got)
		}
		eventually(t, time.Second, "the model reaches ext_proc", func() bool { return client.Model(tn.GetId(), "claude") != nil })
		m := client.Model(tn.GetId(), "claude")
		if m.GetRoute() != "model-"+model.GetId() || len(m.GetDeployments()) != 1 || m.GetPrices()[0].GetOutputMicrosPerMtok() != 15000000 {
			t.Errorf("model = %v", m)
		}
		if pr := client.Provider(m.GetDeployments()[0].GetProviderId()); pr.GetCredential() != "sk-ant-secret" {
			t.Errorf("provider credential = %q", pr.GetCredential())
		}

		if _, err := adminv1.NewKeyServiceClient(p.conn).RevokeKey(p.ctx, &adminv1.RevokeKeyRequest{Id: key.GetKey().GetId()}); err != nil {
			t.Fatal(err)
		}
		took := eventually(t, time.Second, "the revoked key leaves ext_proc", func() bool { return client.Key(hash) == nil })
		t.Logf("revocation reached ext_proc in %v", took)

		if _, err := adminv1.NewTenantServiceClient(p.conn).UpdateTenant(p.ctx, &adminv1.UpdateTenantRequest{
			Tenant: &adminv1.Tenant{Slug: "acme", Status: adminv1.TenantStatus_TENANT_STATUS_SUSPENDED}, UpdateMask: fieldMask("status"),
		}); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Second, "the suspension reaches ext_proc", func() bool {
			return client.Tenant(tn.GetId()).GetStatus().String() == "TENANT_STATUS_SUSPENDED"
		})
	})
}

// An Envoy node on the state-of-the-world protocol receives a consistent,
// valid listener, route table and cluster set, and a new model within 1s.
func TestEnvoyNodeReceivesConsistentConfig(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		p := startPlane(t, st)
		_, _, model := p.setup()
		eventually(t, time.Second, "the model is published", func() bool {
			return p.publisher.Status().Resources[resource.ClusterType] == 1
		})
		ads, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(p.conn).StreamAggregatedResources(p.ctx)
		if err != nil {
			t.Fatal(err)
		}
		node := &corev3.Node{Id: "envoy-1", Cluster: "tollgate"}
		get := func(typeURL string, names []string, version, nonce string) *discoverygrpc.DiscoveryResponse {
			t.Helper()
			if err := ads.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: typeURL, ResourceNames: names, VersionInfo: version, ResponseNonce: nonce}); err != nil {
				t.Fatal(err)
			}
			resp, err := recvWithin(ads, 2*time.Second)
			if err != nil {
				t.Fatalf("waiting for %s: %v", typeURL, err)
			}
			return resp
		}
		cds := get(resource.ClusterType, nil, "", "")
		clusters := decodeAll[*clusterv3.Cluster](t, cds)
		if len(clusters) != 1 || clusters[0].GetName() != "model-"+model.GetId() {
			t.Fatalf("clusters = %v", names(clusters))
		}
		lds := get(resource.ListenerType, nil, "", "")
		listeners := decodeAll[*listenerv3.Listener](t, lds)
		if len(listeners) != 1 || listeners[0].GetName() != xdstranslate.ListenerName {
			t.Fatalf("listeners = %v", names(listeners))
		}
		rds := get(resource.RouteType, []string{xdstranslate.RouteConfigName}, "", "")
		routes := decodeAll[*routev3.RouteConfiguration](t, rds)
		if len(routes) != 1 || len(routes[0].GetVirtualHosts()[0].GetRoutes()) != 2 {
			t.Fatalf("route tables = %v", routes)
		}
		for _, r := range routes[0].GetVirtualHosts()[0].GetRoutes()[:1] {
			if r.GetRoute().GetCluster() != clusters[0].GetName() {
				t.Errorf("route %s points at %s, not a served cluster", r.GetName(), r.GetRoute().GetCluster())
			}
		}

		// ACK the clusters, then add a model: a new CDS version arrives.
		if err := ads.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resource.ClusterType, VersionInfo: cds.GetVersionInfo(), ResponseNonce: cds.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := adminv1.NewModelServiceClient(p.conn).CreateModel(p.ctx, &adminv1.CreateModelRequest{Model: &adminv1.Model{
			Name: "claude-2", Deployments: model.GetDeployments(), Pricing: &adminv1.Pricing{},
		}}); err != nil {
			t.Fatal(err)
		}
		for {
			// A generous deadline: a loaded machine must not fail this.
			resp, err := recvWithin(ads, 10*time.Second-time.Since(start))
			if err != nil {
				t.Fatalf("no new cluster set within 10s of creating a model: %v", err)
			}
			if resp.GetTypeUrl() == resource.ClusterType {
				if n := len(decodeAll[*clusterv3.Cluster](t, resp)); n != 2 {
					t.Fatalf("%d clusters after adding a model, want 2", n)
				}
				t.Logf("new model reached the Envoy node in %v", time.Since(start))
				break
			}
		}
		if st := p.publisher.Status(); len(st.Errors) != 0 || st.Version == "" {
			t.Errorf("publisher status = %+v", st)
		}
	})
}

// The publisher knows which Envoy runs the configuration it serves: a node
// is in step once it has ACKed the current version of every Envoy type,
// and falls behind when a new version is published or when it NACKs.
func TestPublisherKnowsWhatANodeAccepted(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		p := startPlane(t, st)
		_, _, model := p.setup()
		eventually(t, 10*time.Second, "the model is published", func() bool {
			return p.publisher.Status().Resources[resource.ClusterType] == 1
		})
		ads, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(p.conn).StreamAggregatedResources(p.ctx)
		if err != nil {
			t.Fatal(err)
		}
		const nodeID = "envoy-acks"
		first := true
		send := func(r *discoverygrpc.DiscoveryRequest) {
			t.Helper()
			if first { // Envoy's set_node_on_first_message_only
				r.Node = &corev3.Node{Id: nodeID, Cluster: "tollgate"}
				first = false
			}
			if err := ads.Send(r); err != nil {
				t.Fatal(err)
			}
		}
		recv := func() *discoverygrpc.DiscoveryResponse {
			t.Helper()
			resp, err := recvWithin(ads, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}
		ack := func(resp *discoverygrpc.DiscoveryResponse) {
			send(&discoverygrpc.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(),
				ResourceNames: resourceNamesOf(resp.GetTypeUrl())})
		}
		last := map[string]*discoverygrpc.DiscoveryResponse{}
		for _, typ := range xds.EnvoyTypes {
			send(&discoverygrpc.DiscoveryRequest{TypeUrl: typ, ResourceNames: resourceNamesOf(typ)})
		}
		// ACK what arrives until the node is in step (the set-up may still
		// be publishing); before its first ACK it is not.
		acked := 0
		for !p.publisher.Accepted(nodeID) {
			resp := recv()
			if acked == 0 && p.publisher.Accepted(nodeID) {
				t.Fatal("in step before any ACK")
			}
			ack(resp)
			acked++
			last[resp.GetTypeUrl()] = resp
			eventually(t, 10*time.Second, "the ACK of "+resp.GetTypeUrl()+" is seen", func() bool {
				return p.publisher.Acked(nodeID, resp.GetTypeUrl()) == resp.GetVersionInfo()
			})
		}
		if acked < len(xds.EnvoyTypes) {
			t.Fatalf("in step after %d ACKs", acked)
		}

		// A new model: new clusters and routes, not yet accepted.
		if _, err := adminv1.NewModelServiceClient(p.conn).CreateModel(p.ctx, &adminv1.CreateModelRequest{Model: &adminv1.Model{
			Name: "claude-2", Deployments: model.GetDeployments(), Pricing: &adminv1.Pricing{},
		}}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the new model is published", func() bool {
			return p.publisher.Status().Resources[resource.ClusterType] == 2
		})
		if p.publisher.Accepted(nodeID) {
			t.Fatal("in step with versions it has not ACKed")
		}
		// Answer whatever arrives until the node is in step: NACK the new
		// clusters once (the node stays behind), then ACK everything.
		nacked := false
		for !p.publisher.Accepted(nodeID) {
			resp := recv()
			if resp.GetTypeUrl() == resource.ClusterType && resp.GetVersionInfo() != last[resource.ClusterType].GetVersionInfo() && !nacked {
				nacked = true
				send(&discoverygrpc.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: last[resp.GetTypeUrl()].GetVersionInfo(),
					ResponseNonce: resp.GetNonce(), ResourceNames: resourceNamesOf(resp.GetTypeUrl()),
					ErrorDetail: &statuspb.Status{Code: 3, Message: "refused"}})
				// The NACK is a request like the others: once it is seen,
				// the clusters' accepted version is still the old one, and
				// the status carries Envoy's error.
				eventually(t, 10*time.Second, "the NACK is in the status", func() bool {
					return nodeStateOf(p.publisher.Status(), nodeID).Rejections[resource.ClusterType] == "refused"
				})
				if ns := nodeStateOf(p.publisher.Status(), nodeID); ns.Current || !ns.Envoy || !ns.Connected {
					t.Fatalf("after a NACK: %+v", ns)
				}
			}
			ack(resp)
			last[resp.GetTypeUrl()] = resp
			eventually(t, 10*time.Second, "the ACK of "+resp.GetTypeUrl()+" is seen", func() bool {
				return p.publisher.Acked(nodeID, resp.GetTypeUrl()) == resp.GetVersionInfo()
			})
		}
		if !nacked {
			t.Error("no new cluster version arrived after adding a model")
		}
		if ns := nodeStateOf(p.publisher.Status(), nodeID); !ns.Current || len(ns.Rejections) != 0 {
			t.Errorf("after ACKing everything: %+v", ns)
		}
		if got := p.publisher.Acked(nodeID, resource.ClusterType); got != p.publisher.Status().Version[strings.LastIndexByte(p.publisher.Status().Version, '.')+1:] {
			t.Errorf("accepted clusters %s, served %s", got, p.publisher.Status().Version)
		}

		// Its stream closes: the node is forgotten (an Envoy restarted
		// with the same node id has accepted nothing yet).
		if err := ads.CloseSend(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the node is forgotten", func() bool {
			return !slices.Contains(p.publisher.Status().Nodes, nodeID) && p.publisher.Acked(nodeID, resource.ClusterType) == ""
		})
		if p.publisher.Accepted(nodeID) {
			t.Error("a node without a stream is in step")
		}
		// It connects again and is served at once, like a new node.
		again, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(p.conn).StreamAggregatedResources(p.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := again.Send(&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: nodeID}, TypeUrl: resource.ClusterType}); err != nil {
			t.Fatal(err)
		}
		resp, err := recvWithin(again, 10*time.Second)
		if err != nil || len(resp.GetResources()) != 2 {
			t.Fatalf("the reconnected node got %v clusters (%v)", len(resp.GetResources()), err)
		}
		if ns := nodeStateOf(p.publisher.Status(), nodeID); !ns.Connected || ns.Current {
			t.Errorf("reconnected, before any ACK: %+v", ns)
		}
	})
}

func nodeStateOf(st xds.Status, node string) xds.NodeState {
	for _, ns := range st.NodeStates {
		if ns.Node == node {
			return ns
		}
	}
	return xds.NodeState{}
}

func resourceNamesOf(typeURL string) []string {
	if typeURL == resource.RouteType {
		return []string{xdstranslate.RouteConfigName}
	}
	return nil
}

func recvWithin(ads discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient, d time.Duration) (*discoverygrpc.DiscoveryResponse, error) {
	type result struct {
		r   *discoverygrpc.DiscoveryResponse
		err error
	}
	ch := make(chan result, 1)
	go func() { r, err := ads.Recv(); ch <- result{r, err} }()
	select {
	case res := <-ch:
		return res.r, res.err
	case <-time.After(max(d, 0)):
		return nil, context.DeadlineExceeded
	}
}

func decodeAll[M interface {
	proto.Message
	ValidateAll() error
}](t *testing.T, resp *discoverygrpc.DiscoveryResponse) []M {
	t.Helper()
	var out []M
	for _, a := range resp.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		typed, ok := m.(M)
		if !ok {
			t.Fatalf("got %T in a %s response", m, resp.GetTypeUrl())
		}
		if err := typed.ValidateAll(); err != nil {
			t.Errorf("received an invalid %T: %v", m, err)
		}
		out = append(out, typed)
	}
	return out
}

func names[M interface{ GetName() string }](ms []M) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.GetName())
	}
	return out
}
