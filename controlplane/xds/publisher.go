// Package xds serves the control plane's configuration over xDS: Envoy's
// listeners, routes and clusters from a snapshot cache (per node), and the
// tollgate.config.v1 resources for ext_proc from one linear cache per type,
// all behind one aggregated (ADS) server that speaks both the
// state-of-the-world and the delta protocol.
//
// Nodes share one Envoy snapshot unless their bootstrap metadata asks for a
// listener port of their own (node.metadata.tollgate.listen_port, so that
// several Envoys can share a host): those get the same snapshot with the
// listener bound to their port, built once per publication and port.
//
// Publisher is the one place that publishes: it checks a new Envoy snapshot
// with Consistent() (every resource was already checked with ValidateAll()
// by the translator) and keeps serving the last good one when a
// translation fails.
package xds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
)

// Type URLs of the ext_proc configuration resources.
var (
	KeyType      = typeURL(&configv1.Key{})
	TenantType   = typeURL(&configv1.Tenant{})
	ProviderType = typeURL(&configv1.Provider{})
	ModelType    = typeURL(&configv1.Model{})
	// ConfigTypes are every ext_proc type, in the order a client should
	// subscribe (tenants before the keys that name them).
	ConfigTypes = []string{TenantType, ProviderType, ModelType, KeyType}
)

func typeURL(m proto.Message) string {
	return resource.APITypePrefix + string(m.ProtoReflect().Descriptor().FullName())
}

// Status is what the admin API reports about publishing.
type Status struct {
	// Version of the shared Envoy snapshot being served; empty before the
	// first. A node with a listen port of its own is served other listener
	// versions (NodeState.Current compares it with its own).
	Version     string
	PublishTime time.Time
	// Errors of the last translation: parts of the configuration that are
	// not served. A failed publication keeps the previous snapshot. Then
	// one line per connected node whose bootstrap metadata was refused.
	Errors []string
	// Nodes are the node ids connected to this replica.
	Nodes []string
	// NodeStates says, for each of Nodes, what it has accepted and refused.
	NodeStates []NodeState
	// Resources counts what is served, by type URL.
	Resources map[string]int
}

// Publisher owns the caches the xDS server reads.
type Publisher struct {
	log       *slog.Logger
	snapshots cache.SnapshotCache
	config    map[string]*cache.LinearCache

	mu sync.Mutex
	// current is the shared snapshot, served to nodes without a listen
	// port of their own; own holds the snapshots built from it for the
	// ports nodes ask for, until the next publication.
	current *cache.Snapshot
	own     map[uint32]*cache.Snapshot
	nodes   map[string]nodeInfo
	served  map[string]map[string]proto.Message // ext_proc resources by type and name
	status  Status
	metrics *xdsMetrics // nil until Instrument
	acks    *acks
}

// NewPublisher returns a publisher with empty caches.
func NewPublisher(log *slog.Logger) *Publisher {
	p := &Publisher{
		log:       log,
		snapshots: cache.NewSnapshotCache(true, cache.IDHash{}, nil),
		config:    map[string]*cache.LinearCache{},
		own:       map[uint32]*cache.Snapshot{},
		nodes:     map[string]nodeInfo{},
		served:    map[string]map[string]proto.Message{},
		acks:      newAcks(),
	}
	for _, t := range ConfigTypes {
		p.config[t] = cache.NewLinearCache(t)
		p.served[t] = map[string]proto.Message{}
	}
	return p
}

// Cache is what the xDS server serves: Envoy's types from the snapshot
// cache, ext_proc's from their linear caches.
func (p *Publisher) Cache() cache.Cache {
	caches := map[string]cache.Cache{}
	for t, c := range p.config {
		caches[t] = c
	}
	const envoy = "envoy"
	caches[envoy] = p.snapshots
	classify := func(typeURL string) string {
		if _, ok := p.config[typeURL]; ok {
			return typeURL
		}
		return envoy
	}
	return &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return classify(r.GetTypeUrl()) },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return classify(r.GetTypeUrl()) },
		Caches:        caches,
	}
}

// Publish serves a new translation. envoy is nil when translation failed
// outright; translateErr lists what a partial translation left out. The
// previous Envoy snapshot stays when the new one is missing or inconsistent.
func (p *Publisher) Publish(ctx context.Context, envoy *xdstranslate.Envoy, cfg *xdstranslate.Config, translateErr error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status.Errors = errorLines(translateErr)
	var errs []error
	changed := false
	if envoy != nil {
		snap, err := envoySnapshot(envoy)
		if err == nil {
			err = snap.Consistent()
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("envoy snapshot not published: %w", err))
		case p.current == nil || snap.GetVersion(resource.ListenerType) != p.current.GetVersion(resource.ListenerType) ||
			snap.GetVersion(resource.RouteType) != p.current.GetVersion(resource.RouteType) ||
			snap.GetVersion(resource.ClusterType) != p.current.GetVersion(resource.ClusterType):
			p.current, changed = snap, true
			clear(p.own)
			for node, info := range p.nodes {
				if err := p.setNodeSnapshotLocked(ctx, node, info); err != nil {
					errs = append(errs, fmt.Errorf("setting the snapshot of node %s: %w", node, err))
				}
			}
			p.status.Version = snapshotVersion(snap)
			p.status.PublishTime = time.Now().UTC()
		}
	}
	if cfg != nil {
		changed = publishConfig(p, KeyType, cfg.Keys) || changed
		changed = publishConfig(p, TenantType, cfg.Tenants) || changed
		changed = publishConfig(p, ProviderType, cfg.Providers) || changed
		changed = publishConfig(p, ModelType, cfg.Models) || changed
	}
	if changed {
		p.metrics.published(time.Now())
	}
	p.status.Resources = p.countResources()
	err := errors.Join(errs...)
	if err != nil {
		p.status.Errors = append(p.status.Errors, errorLines(err)...)
	}
	return err
}

// publishConfig updates one linear cache with what changed since the last
// publication, so that one revoked key is one small delta, not every key.
// It reports whether anything changed.
func publishConfig[M proto.Message](p *Publisher, typeURL string, next map[string]M) bool {
	prev := p.served[typeURL]
	updated := map[string]types.Resource{}
	var deleted []string
	for name, m := range next {
		if old, ok := prev[name]; !ok || !proto.Equal(old, m) {
			updated[name] = m
		}
	}
	for name := range prev {
		if _, ok := next[name]; !ok {
			deleted = append(deleted, name)
		}
	}
	if len(updated) == 0 && len(deleted) == 0 {
		return false
	}
	sort.Strings(deleted)
	if err := p.config[typeURL].UpdateResources(updated, deleted); err != nil {
		p.log.Error("updating ext_proc config cache", "type", typeURL, "err", err)
		return false
	}
	served := make(map[string]proto.Message, len(next))
	for name, m := range next {
		served[name] = m
	}
	p.served[typeURL] = served
	p.log.Debug("ext_proc config published", "type", typeURL, "updated", len(updated), "deleted", len(deleted))
	return true
}

func (p *Publisher) countResources() map[string]int {
	out := map[string]int{}
	for t, m := range p.served {
		out[t] = len(m)
	}
	if p.current != nil {
		for _, t := range []string{resource.ListenerType, resource.RouteType, resource.ClusterType} {
			out[t] = len(p.current.GetResources(t))
		}
	}
	return out
}

// nodeGone forgets a node whose last stream closed: its snapshot, and its
// place in Status. It connects again like a new node. node may be empty.
func (p *Publisher) nodeGone(node string) {
	if node == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// A new stream of the node may have registered since its last one
	// closed (an Envoy reconnecting): then it stays. Otherwise the new
	// stream's first request finds the node unknown and sets its snapshot,
	// since streams register before nodeConnected (callbacks).
	if p.acks.connected(node) {
		return
	}
	info := p.nodes[node]
	delete(p.nodes, node)
	p.dropUnusedLocked(info.listenPort)
	p.snapshots.ClearSnapshot(node)
}

// Status reports what is served.
func (p *Publisher) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.status
	s.Errors = slices.Clone(s.Errors)
	for n := range p.nodes {
		s.Nodes = append(s.Nodes, n)
	}
	sort.Strings(s.Nodes)
	for _, n := range s.Nodes {
		ns := p.acks.nodeState(n, p.servedVersionsLocked(n))
		ns.ListenPort = p.nodes[n].listenPort
		s.NodeStates = append(s.NodeStates, ns)
		if problem := p.nodes[n].problem; problem != "" {
			s.Errors = append(s.Errors, fmt.Sprintf("node %s: %s", n, problem))
		}
	}
	return s
}

// envoySnapshot versions each type by a hash of its resources, so that an
// unchanged configuration is not pushed again.
func envoySnapshot(e *xdstranslate.Envoy) (*cache.Snapshot, error) {
	// Every type gets a version even when it has no resources: Envoy waits
	// for a CDS response before it asks for listeners.
	byType := map[resource.Type][]types.Resource{
		resource.ListenerType: {}, resource.RouteType: {}, resource.ClusterType: {},
	}
	for _, l := range e.Listeners {
		byType[resource.ListenerType] = append(byType[resource.ListenerType], l)
	}
	for _, r := range e.Routes {
		byType[resource.RouteType] = append(byType[resource.RouteType], r)
	}
	for _, c := range e.Clusters {
		byType[resource.ClusterType] = append(byType[resource.ClusterType], c)
	}
	snap := &cache.Snapshot{}
	for t, rs := range byType {
		v, err := hashResources(rs)
		if err != nil {
			return nil, err
		}
		typed, err := cache.NewSnapshot(v, map[resource.Type][]types.Resource{t: rs})
		if err != nil {
			return nil, err
		}
		idx := cache.GetResponseType(t)
		snap.Resources[idx] = typed.Resources[idx]
	}
	return snap, nil
}

func hashResources(rs []types.Resource) (string, error) {
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	for _, r := range rs {
		b, err := opts.Marshal(r)
		if err != nil {
			return "", err
		}
		_, _ = fmt.Fprintf(h, "%d:", len(b)) // a hash never fails to write
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func snapshotVersion(s *cache.Snapshot) string {
	return strings.Join([]string{
		s.GetVersion(resource.ListenerType), s.GetVersion(resource.RouteType), s.GetVersion(resource.ClusterType),
	}, ".")
}

func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func joinErrs(errs ...error) error { return errors.Join(errs...) }
