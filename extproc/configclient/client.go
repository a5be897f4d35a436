// Package configclient holds the configuration ext_proc needs — keys by
// hash, tenants, providers with their credentials, models — in memory, kept
// current over the control plane's delta ADS stream. The hot path reads it
// without any remote call; while the control plane is unreachable the last
// configuration stays in force and the client reconnects with backoff,
// resuming from the versions it holds so only changes are sent again.
package configclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	"github.com/tollgate-dev/tollgate/controlplane/xds"
)

// MaxMessageBytes is the receive limit for config responses: the first
// sync of 100,000 keys is about 16 MB, beyond gRPC's 4 MB default.
const MaxMessageBytes = 256 << 20

// Client is the in-memory configuration and the stream that feeds it.
type Client struct {
	conn   grpc.ClientConnInterface
	nodeID string
	log    *slog.Logger

	mu        sync.RWMutex
	keys      map[string]*configv1.Key
	tenants   map[string]*configv1.Tenant
	providers map[string]*configv1.Provider
	models    map[string]*configv1.Model
	// byName finds a tenant's model by public name: "" holds the
	// platform's models, a tenant id that tenant's own.
	byName   map[string]map[string]*configv1.Model
	versions map[string]map[string]string // type → name → version, to resume

	synced     map[string]bool
	ready      chan struct{}
	readyOnce  sync.Once
	lastUpdate time.Time
}

// New returns a client that will read from conn as node nodeID. Call Run.
func New(conn grpc.ClientConnInterface, nodeID string, log *slog.Logger) *Client {
	c := &Client{
		conn: conn, nodeID: nodeID, log: log,
		keys: map[string]*configv1.Key{}, tenants: map[string]*configv1.Tenant{},
		providers: map[string]*configv1.Provider{}, models: map[string]*configv1.Model{},
		byName: map[string]map[string]*configv1.Model{}, versions: map[string]map[string]string{},
		synced: map[string]bool{}, ready: make(chan struct{}),
	}
	for _, t := range xds.ConfigTypes {
		c.versions[t] = map[string]string{}
	}
	return c
}

// Ready is closed once every type has been received at least once; before
// that, ext_proc must refuse traffic rather than call every key unknown.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// Key returns the key whose secret hashes to hash (lower-case hex).
func (c *Client) Key(hash string) *configv1.Key {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.keys[hash]
}

// Tenant returns a tenant by id.
func (c *Client) Tenant(id string) *configv1.Tenant {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.tenants[id]
}

// Provider returns a provider by id.
func (c *Client) Provider(id string) *configv1.Provider {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.providers[id]
}

// Model finds the model a tenant means by name: its own model of that name,
// else the platform's.
func (c *Client) Model(tenantID, name string) *configv1.Model {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if m := c.byName[tenantID][name]; m != nil {
		return m
	}
	return c.byName[""][name]
}

// Models lists the models a tenant may use (its own shadowing the
// platform's of the same name).
func (c *Client) Models(tenantID string) []*configv1.Model {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*configv1.Model, 0, len(c.byName[""])+len(c.byName[tenantID]))
	for name, m := range c.byName[""] {
		if c.byName[tenantID][name] == nil {
			out = append(out, m)
		}
	}
	for _, m := range c.byName[tenantID] {
		out = append(out, m)
	}
	return out
}

// Counts reports how many resources of each type are held.
func (c *Client) Counts() map[string]int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return map[string]int{
		xds.KeyType: len(c.keys), xds.TenantType: len(c.tenants),
		xds.ProviderType: len(c.providers), xds.ModelType: len(c.models),
	}
}

// Run keeps the configuration current until ctx ends, reconnecting with
// jittered exponential backoff (100 ms to 10 s).
func (c *Client) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		err := c.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = 100 * time.Millisecond // the stream was healthy for a while
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		c.log.Warn("config stream ended; keeping the last configuration and reconnecting", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// stream runs one delta ADS stream until it fails.
func (c *Client) stream(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ads := discoverygrpc.NewAggregatedDiscoveryServiceClient(c.conn)
	st, err := ads.DeltaAggregatedResources(ctx, grpc.MaxCallRecvMsgSize(MaxMessageBytes))
	if err != nil {
		return fmt.Errorf("opening the config stream: %w", err)
	}
	node := &corev3.Node{Id: c.nodeID, UserAgentName: "tollgate-extproc"}
	for _, t := range xds.ConfigTypes {
		req := &discoverygrpc.DeltaDiscoveryRequest{
			Node:                    node,
			TypeUrl:                 t,
			InitialResourceVersions: c.heldVersions(t),
		}
		if err := st.Send(req); err != nil {
			return fmt.Errorf("subscribing to %s: %w", t, err)
		}
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return fmt.Errorf("receiving config: %w", err)
		}
		ack := &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
		if err := c.apply(resp); err != nil {
			// NACK: keep what we have, tell the server why.
			c.log.Error("rejecting a config update", "type", resp.GetTypeUrl(), "err", err)
			ack.ErrorDetail = &statuspb.Status{Code: 3, Message: err.Error()}
		}
		if err := st.Send(ack); err != nil {
			return fmt.Errorf("acknowledging config: %w", err)
		}
	}
}

func (c *Client) heldVersions(typeURL string) map[string]string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]string, len(c.versions[typeURL]))
	for k, v := range c.versions[typeURL] {
		out[k] = v
	}
	return out
}

// apply decodes every resource of a response first and changes the
// configuration only if all of them decode: an update applies whole or not
// at all.
func (c *Client) apply(resp *discoverygrpc.DeltaDiscoveryResponse) error {
	t := resp.GetTypeUrl()
	type decoded struct {
		name, version string
		msg           proto.Message
	}
	var adds []decoded
	for _, r := range resp.GetResources() {
		if r.GetResource().GetTypeUrl() != t {
			return fmt.Errorf("resource %s has type %s in a %s response", r.GetName(), r.GetResource().GetTypeUrl(), t)
		}
		m, err := r.GetResource().UnmarshalNew()
		if err != nil {
			return fmt.Errorf("decoding %s: %w", r.GetName(), err)
		}
		adds = append(adds, decoded{r.GetName(), r.GetVersion(), m})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range resp.GetRemovedResources() {
		c.remove(t, name)
		delete(c.versions[t], name)
	}
	for _, a := range adds {
		if err := c.put(t, a.name, a.msg); err != nil {
			return err
		}
		c.versions[t][a.name] = a.version
	}
	c.lastUpdate = time.Now()
	c.synced[t] = true
	if len(c.synced) == len(xds.ConfigTypes) {
		c.readyOnce.Do(func() { close(c.ready) })
	}
	return nil
}

var errUnknownType = errors.New("unknown config type")

func (c *Client) put(t, name string, m proto.Message) error {
	switch r := m.(type) {
	case *configv1.Key:
		c.keys[name] = r
	case *configv1.Tenant:
		c.tenants[name] = r
	case *configv1.Provider:
		c.providers[name] = r
	case *configv1.Model:
		if old := c.models[name]; old != nil {
			c.unindexModel(old)
		}
		c.models[name] = r
		owner := r.GetTenantId()
		if c.byName[owner] == nil {
			c.byName[owner] = map[string]*configv1.Model{}
		}
		c.byName[owner][r.GetName()] = r
	default:
		return fmt.Errorf("%w %s", errUnknownType, t)
	}
	return nil
}

func (c *Client) remove(t, name string) {
	switch t {
	case xds.KeyType:
		delete(c.keys, name)
	case xds.TenantType:
		delete(c.tenants, name)
	case xds.ProviderType:
		delete(c.providers, name)
	case xds.ModelType:
		if old := c.models[name]; old != nil {
			c.unindexModel(old)
		}
		delete(c.models, name)
	}
}

func (c *Client) unindexModel(m *configv1.Model) {
	byName := c.byName[m.GetTenantId()]
	if byName[m.GetName()] == m {
		delete(byName, m.GetName())
	}
}
