package xds

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
)

// nodeInfo is what the publisher takes from a node's bootstrap metadata.
type nodeInfo struct {
	// listenPort is the port the node's listener binds instead of the
	// shared one; 0 when the node shares the default snapshot.
	listenPort uint32
	// problem says why the node's metadata was refused (it then shares
	// the default snapshot); empty when it was not.
	problem string
}

// nodeInfoOf reads node.metadata.tollgate. Nothing under it is the common
// case; a malformed value is refused as a whole, with the reason.
func nodeInfoOf(n *corev3.Node) nodeInfo {
	port, err := listenPortOf(n.GetMetadata())
	if err != nil {
		return nodeInfo{problem: err.Error() + "; the node is served the shared listener"}
	}
	return nodeInfo{listenPort: port}
}

func listenPortOf(md *structpb.Struct) (uint32, error) {
	const where = "node.metadata." + xdstranslate.MetadataNamespace
	v, ok := md.GetFields()[xdstranslate.MetadataNamespace]
	if !ok {
		return 0, nil
	}
	s := v.GetStructValue()
	if s == nil {
		return 0, fmt.Errorf("%s is %s, not a map such as {%s: 10001}", where, text(v), xdstranslate.NodeListenPortKey)
	}
	var errs []error
	keys := make([]string, 0, len(s.GetFields()))
	for k := range s.GetFields() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k != xdstranslate.NodeListenPortKey {
			errs = append(errs, fmt.Errorf("%s.%s is not a known field (known: %s)", where, k, xdstranslate.NodeListenPortKey))
		}
	}
	var port uint32
	if pv, ok := s.GetFields()[xdstranslate.NodeListenPortKey]; ok {
		f, isNum := pv.GetKind().(*structpb.Value_NumberValue)
		if !isNum || f.NumberValue != math.Trunc(f.NumberValue) || f.NumberValue < 1 || f.NumberValue > 65535 {
			errs = append(errs, fmt.Errorf("%s.%s is %s, not a port number from 1 to 65535", where, xdstranslate.NodeListenPortKey, text(pv)))
		} else {
			port = uint32(f.NumberValue)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return port, nil
}

// text shows a metadata value as the operator wrote it (JSON), bounded.
func text(v *structpb.Value) string {
	b, err := protojson.Marshal(v)
	if err != nil {
		return "an unreadable value"
	}
	const maxLen = 64
	if len(b) > maxLen {
		return string(b[:maxLen]) + "…"
	}
	return string(b)
}

// nodeConnected records a node (from a request that carries it) and gives
// it its snapshot before its first watch is created. Only a request for one
// of Envoy's types changes what a known node is served: a node's listener
// follows its Envoy's metadata, not that of another client (ext_proc) that
// happens to share the node id.
func (p *Publisher) nodeConnected(ctx context.Context, n *corev3.Node, typeURL string) {
	id := n.GetId()
	info := nodeInfoOf(n)
	p.mu.Lock()
	defer p.mu.Unlock()
	old, known := p.nodes[id]
	if known && (old == info || !slices.Contains(EnvoyTypes, typeURL)) {
		return
	}
	p.nodes[id] = info
	switch {
	case info.problem != "":
		p.log.Warn("refused a node's metadata", "node", id, "err", info.problem)
	case info.listenPort != 0:
		p.log.Info("node listens on its own port", "node", id, "port", info.listenPort)
	}
	if known && old.listenPort != info.listenPort {
		p.dropUnusedLocked(old.listenPort)
	}
	if err := p.setNodeSnapshotLocked(ctx, id, info); err != nil {
		p.log.Error("setting the snapshot of a node", "node", id, "err", err)
	}
}

// setNodeSnapshotLocked gives node its snapshot, when there is one yet.
func (p *Publisher) setNodeSnapshotLocked(ctx context.Context, node string, info nodeInfo) error {
	snap, err := p.snapshotForLocked(info.listenPort)
	if err != nil || snap == nil {
		return err
	}
	return p.snapshots.SetSnapshot(ctx, node, snap)
}

// snapshotForLocked is the snapshot of the nodes that listen on port: the
// shared one for 0, else one built from it once per publication and shared
// by every node asking for that port. nil before the first publication.
func (p *Publisher) snapshotForLocked(port uint32) (*cache.Snapshot, error) {
	if port == 0 || p.current == nil {
		return p.current, nil
	}
	if s, ok := p.own[port]; ok {
		return s, nil
	}
	s, err := withListenPort(p.current, port)
	if err == nil {
		err = s.Consistent()
	}
	if err != nil {
		return nil, fmt.Errorf("the snapshot for listen port %d: %w", port, err)
	}
	p.own[port] = s
	return s, nil
}

// dropUnusedLocked forgets the snapshot of port when no node asks for it.
func (p *Publisher) dropUnusedLocked(port uint32) {
	if port == 0 {
		return
	}
	for _, info := range p.nodes {
		if info.listenPort == port {
			return
		}
	}
	delete(p.own, port)
}

// withListenPort is shared with the client-facing listener bound to port;
// routes and clusters are the same resources with the same versions, and
// the listeners' version is the hash of the new listeners.
func withListenPort(shared *cache.Snapshot, port uint32) (*cache.Snapshot, error) {
	byName := shared.GetResources(resource.ListenerType)
	names := make([]string, 0, len(byName))
	for name := range byName {
		names = append(names, name)
	}
	sort.Strings(names)
	listeners := make([]types.Resource, 0, len(names))
	for _, name := range names {
		l, ok := byName[name].(*listenerv3.Listener)
		if !ok {
			return nil, fmt.Errorf("listener %s is a %T", name, byName[name])
		}
		if name == xdstranslate.ListenerName {
			l = proto.Clone(l).(*listenerv3.Listener)
			sa := l.GetAddress().GetSocketAddress()
			if sa == nil {
				return nil, fmt.Errorf("listener %s has no socket address to bind port %d on", name, port)
			}
			sa.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: port}
		}
		listeners = append(listeners, l)
	}
	v, err := hashResources(listeners)
	if err != nil {
		return nil, err
	}
	s := &cache.Snapshot{Resources: shared.Resources}
	s.Resources[cache.GetResponseType(resource.ListenerType)] = cache.NewResources(v, listeners)
	return s, nil
}
