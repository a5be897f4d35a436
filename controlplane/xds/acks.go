package xds

import (
	"sync"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// EnvoyTypes are the resource types of Envoy's snapshot.
var EnvoyTypes = []string{resource.ListenerType, resource.RouteType, resource.ClusterType}

// acks follows what each node has accepted over state-of-the-world
// streams: a request that answers a response (it carries the response's
// nonce) without an error_detail accepts the version it names. Envoy sends
// its node only on a stream's first request
// (set_node_on_first_message_only), so the node is remembered per stream.
type acks struct {
	mu       sync.Mutex
	streams  map[int64]string             // stream id → node id
	accepted map[string]map[string]string // node id → type URL → version
}

func newAcks() *acks {
	return &acks{streams: map[int64]string{}, accepted: map[string]map[string]string{}}
}

func (a *acks) request(stream int64, r *discoverygrpc.DiscoveryRequest) {
	a.mu.Lock()
	defer a.mu.Unlock()
	node := r.GetNode().GetId()
	if node != "" {
		a.streams[stream] = node
	} else {
		node = a.streams[stream]
	}
	if node == "" || r.GetResponseNonce() == "" || r.GetErrorDetail() != nil {
		return
	}
	byType := a.accepted[node]
	if byType == nil {
		byType = map[string]string{}
		a.accepted[node] = byType
	}
	byType[r.GetTypeUrl()] = r.GetVersionInfo()
}

func (a *acks) closed(stream int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.streams, stream)
}

func (a *acks) version(node, typeURL string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accepted[node][typeURL]
}

// Acked is the last version of typeURL that node accepted; empty when none.
func (p *Publisher) Acked(node, typeURL string) string { return p.acks.version(node, typeURL) }

// Accepted reports whether node has accepted, for each of Envoy's resource
// types, the version currently served: the Envoy with that node id runs the
// current configuration. Only state-of-the-world streams are followed
// (Envoy's ADS, as Tollgate's bootstrap configures it).
func (p *Publisher) Accepted(node string) bool {
	p.mu.Lock()
	cur := p.current
	p.mu.Unlock()
	if cur == nil {
		return false
	}
	for _, t := range EnvoyTypes {
		if p.Acked(node, t) != cur.GetVersion(t) {
			return false
		}
	}
	return true
}
