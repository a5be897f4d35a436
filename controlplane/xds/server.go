package xds

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
)

// Register serves p's caches on g: ADS (state of the world and delta) and,
// for clients that do not aggregate, the separate LDS, RDS and CDS services.
func Register(ctx context.Context, g *grpc.Server, p *Publisher) {
	srv := serverv3.NewServer(ctx, p.Cache(), callbacks(p))
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, srv)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, srv)
	routeservice.RegisterRouteDiscoveryServiceServer(g, srv)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, srv)
}

// callbacks give a node its snapshot on its first request: the snapshot
// cache keeps one per node id, and a node it has never seen would
// otherwise wait for the next publication.
func callbacks(p *Publisher) serverv3.Callbacks {
	seen := func(ctx context.Context, n *corev3.Node, typeURL string) {
		if n.GetId() != "" {
			p.nodeConnected(ctx, n, typeURL)
		}
	}
	m := p.observer() // nil without Instrument: its methods do nothing
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(_ context.Context, id int64, _ string) error {
			m.opened(id, false)
			return nil
		},
		DeltaStreamOpenFunc: func(_ context.Context, id int64, _ string) error {
			m.opened(id, true)
			return nil
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) {
			m.closed(id, false)
			p.nodeGone(p.acks.closed(id))
		},
		DeltaStreamClosedFunc: func(id int64, _ *corev3.Node) {
			m.closed(id, true)
			p.nodeGone(p.acks.deltaClosed(id))
		},
		StreamRequestFunc: func(id int64, r *discoverygrpc.DiscoveryRequest) error {
			// The stream is registered before the node is seen, so that
			// nodeGone, for another of the node's streams closing now,
			// finds this one.
			p.acks.request(id, r)
			seen(context.Background(), r.GetNode(), r.GetTypeUrl())
			m.requested(id, false, r.GetNode())
			return nil
		},
		StreamDeltaRequestFunc: func(id int64, r *discoverygrpc.DeltaDiscoveryRequest) error {
			p.acks.deltaRequest(id, r)
			seen(context.Background(), r.GetNode(), r.GetTypeUrl())
			m.requested(id, true, r.GetNode())
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoverygrpc.DiscoveryRequest, r *discoverygrpc.DiscoveryResponse) {
			m.responded(id, false, r.GetTypeUrl())
		},
		StreamDeltaResponseFunc: func(id int64, _ *discoverygrpc.DeltaDiscoveryRequest, r *discoverygrpc.DeltaDiscoveryResponse) {
			m.responded(id, true, r.GetTypeUrl())
		},
	}
}
