package xds

import (
	"maps"
	"slices"
	"sync"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// EnvoyTypes are the resource types of Envoy's snapshot.
var EnvoyTypes = []string{resource.ListenerType, resource.RouteType, resource.ClusterType}

// maxRejectionBytes bounds the error text kept from a node's NACK.
const maxRejectionBytes = 1024

// acks follows what each node has accepted and refused over
// state-of-the-world streams: a request that answers a response (it
// carries the response's nonce) accepts the version it names (ACK), or,
// with an error_detail, refuses the response and names the version it keeps
// (NACK). Envoy sends its node only on a stream's first request
// (set_node_on_first_message_only), so the node is remembered per stream.
type acks struct {
	mu       sync.Mutex
	streams  map[int64]string             // stream id → node id
	deltas   map[int64]string             // delta stream id → node id (ext_proc's streams)
	open     map[string]int               // node id → its streams in streams and deltas
	accepted map[string]map[string]string // node id → type URL → version
	rejected map[string]map[string]string // node id → type URL → the last NACK's error, until an ACK
	envoy    map[string]bool              // node ids that asked for one of EnvoyTypes
}

func newAcks() *acks {
	return &acks{
		streams:  map[int64]string{},
		deltas:   map[int64]string{},
		open:     map[string]int{},
		accepted: map[string]map[string]string{},
		rejected: map[string]map[string]string{},
		envoy:    map[string]bool{},
	}
}

func (a *acks) request(stream int64, r *discoverygrpc.DiscoveryRequest) {
	a.mu.Lock()
	defer a.mu.Unlock()
	node := a.registerLocked(a.streams, stream, r.GetNode().GetId())
	if node == "" {
		return
	}
	typ := r.GetTypeUrl()
	if slices.Contains(EnvoyTypes, typ) {
		a.envoy[node] = true
	}
	if r.GetResponseNonce() == "" {
		return // a subscription, not an answer
	}
	if e := r.GetErrorDetail(); e != nil {
		msg := e.GetMessage()
		if len(msg) > maxRejectionBytes {
			msg = msg[:maxRejectionBytes] + "…"
		}
		setIn(a.rejected, node, typ, msg)
		return
	}
	setIn(a.accepted, node, typ, r.GetVersionInfo())
	delete(a.rejected[node], typ)
}

// registerLocked notes that stream (a key of streams, one of a's two maps)
// serves node, the first time a request names it, and returns the node the
// stream serves; empty until a request has named one.
func (a *acks) registerLocked(streams map[int64]string, stream int64, node string) string {
	if known, ok := streams[stream]; ok || node == "" {
		return known
	}
	streams[stream] = node
	a.open[node]++
	return node
}

// unregisterLocked forgets stream (a key of streams) and returns its node
// when that node has no stream left, as closed describes.
func (a *acks) unregisterLocked(streams map[int64]string, stream int64) (gone string) {
	node, ok := streams[stream]
	if !ok {
		return ""
	}
	delete(streams, stream)
	if a.open[node]--; a.open[node] > 0 {
		return ""
	}
	delete(a.open, node)
	delete(a.accepted, node)
	delete(a.rejected, node)
	delete(a.envoy, node)
	return node
}

func setIn(m map[string]map[string]string, node, typ, v string) {
	byType := m[node]
	if byType == nil {
		byType = map[string]string{}
		m[node] = byType
	}
	byType[typ] = v
}

// closed forgets a state-of-the-world stream. It returns the stream's node
// when that node has no stream left, having forgotten what it accepted and
// refused: a node that connects again (an Envoy restarted with the same
// node id) starts from nothing, and the node ids of pods long gone do not
// pile up.
func (a *acks) closed(stream int64) (gone string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.unregisterLocked(a.streams, stream)
}

func (a *acks) connected(node string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.open[node] > 0
}

// deltaRequest notes which node a delta stream serves (for Connected only:
// delta answers are not followed).
func (a *acks) deltaRequest(stream int64, r *discoverygrpc.DeltaDiscoveryRequest) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.registerLocked(a.deltas, stream, r.GetNode().GetId())
}

// deltaClosed forgets a delta stream, as closed does.
func (a *acks) deltaClosed(stream int64) (gone string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.unregisterLocked(a.deltas, stream)
}

func (a *acks) version(node, typeURL string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accepted[node][typeURL]
}

// NodeState is what one node runs, as far as its xDS answers tell.
type NodeState struct {
	Node string
	// Envoy: the node asked for Envoy's resource types (ext_proc nodes
	// ask only for Tollgate's, over delta xDS, which is not followed).
	Envoy bool
	// Connected: the node has an open xDS stream to this replica.
	Connected bool
	// Current: an Envoy node that accepted the version served to it of
	// every Envoy type.
	Current bool
	// Accepted is the last version of each type the node accepted.
	Accepted map[string]string
	// Rejections is the error of the node's last NACK of each type it has
	// not accepted a version of since.
	Rejections map[string]string
	// ListenPort is the port of the node's own listener, which its
	// bootstrap metadata asked for; 0 when it shares the default one.
	ListenPort uint32
}

// nodeState reports node against the versions served (by type URL).
func (a *acks) nodeState(node string, served map[string]string) NodeState {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := NodeState{
		Node:       node,
		Envoy:      a.envoy[node],
		Connected:  a.open[node] > 0,
		Accepted:   maps.Clone(a.accepted[node]),
		Rejections: maps.Clone(a.rejected[node]),
	}
	st.Current = st.Envoy && st.Connected && len(served) > 0
	for _, t := range EnvoyTypes {
		if st.Accepted[t] != served[t] {
			st.Current = false
		}
	}
	return st
}

// Acked is the last version of typeURL that node accepted; empty when none.
func (p *Publisher) Acked(node, typeURL string) string { return p.acks.version(node, typeURL) }

// Accepted reports whether node has accepted, for each of Envoy's resource
// types, the version currently served to it (its own listener's, when it
// asked for a listen port): the Envoy with that node id runs the
// current configuration. Only state-of-the-world streams are followed
// (Envoy's ADS, as Tollgate's bootstrap configures it).
func (p *Publisher) Accepted(node string) bool {
	return p.acks.nodeState(node, p.servedVersions(node)).Current
}

// servedVersions are the versions of Envoy's types currently served to
// node; empty before the first publication, and for a node not connected.
func (p *Publisher) servedVersions(node string) map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.servedVersionsLocked(node)
}

func (p *Publisher) servedVersionsLocked(node string) map[string]string {
	info, ok := p.nodes[node]
	if !ok {
		return nil
	}
	snap, err := p.snapshotForLocked(info.listenPort)
	if err != nil || snap == nil {
		return nil
	}
	out := make(map[string]string, len(EnvoyTypes))
	for _, t := range EnvoyTypes {
		out[t] = snap.GetVersion(t)
	}
	return out
}
