package xds

import (
	"context"
	"log/slog"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate-dev/tollgate/controlplane/ir"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
)

// Nodes that ask for the same port share one snapshot, built once per
// publication; nodes without a port share the default one; a port's
// snapshot goes with the last node that asked for it.
func TestSnapshotsArePerPortNotPerNode(t *testing.T) {
	p := NewPublisher(slog.New(slog.DiscardHandler))
	o := xdstranslate.DefaultOptions()
	envoy, err := xdstranslate.TranslateEnvoy(&ir.Gateway{}, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(context.Background(), envoy, nil, nil); err != nil {
		t.Fatal(err)
	}
	node := func(id string, port any) *corev3.Node {
		n := &corev3.Node{Id: id}
		if port != nil {
			n.Metadata, _ = structpb.NewStruct(map[string]any{xdstranslate.MetadataNamespace: map[string]any{xdstranslate.NodeListenPortKey: port}})
		}
		return n
	}
	ctx := context.Background()
	for _, n := range []*corev3.Node{node("a", 10001), node("b", 10001), node("c", nil), node("d", nil), node("e", 10002)} {
		p.nodeConnected(ctx, n, EnvoyTypes[0])
	}
	snap := func(id string) any {
		s, err := p.snapshots.GetSnapshot(id)
		if err != nil {
			t.Fatalf("node %s: %v", id, err)
		}
		return s
	}
	if snap("a") != snap("b") || snap("c") != snap("d") || snap("c") != any(p.current) || snap("a") == snap("c") || snap("a") == snap("e") {
		t.Error("snapshots are not one per port")
	}
	if len(p.own) != 2 {
		t.Errorf("%d snapshots of their own for 2 ports", len(p.own))
	}
	// A client that shares a node id but asks only for ext_proc's types
	// (no metadata) does not move the node's listener.
	p.nodeConnected(ctx, node("a", nil), KeyType)
	if p.nodes["a"].listenPort != 10001 {
		t.Errorf("an ext_proc request moved node a to port %d", p.nodes["a"].listenPort)
	}
	// The same node id asking for Envoy's types with another port moves.
	p.nodeConnected(ctx, node("e", 10003), EnvoyTypes[0])
	if _, ok := p.own[10002]; ok || p.own[10003] == nil {
		t.Errorf("after e moved to 10003, own snapshots: %v", p.own)
	}
	for _, id := range []string{"a", "b", "e"} {
		p.nodeGone(id)
	}
	if len(p.own) != 0 {
		t.Errorf("%d snapshots of their own left with no node asking", len(p.own))
	}
}
