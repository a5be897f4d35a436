package testdataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
)

// Config configures a test data plane.
type Config struct {
	// Bootstrap is Envoy's bootstrap, as envoy.Render renders it.
	Bootstrap []byte
	// Logger receives the harness's logs. A refused resource is logged at
	// Error level. Defaults to slog.Default().
	Logger *slog.Logger
	// AccessLog receives what Envoy's stdout access logger would print.
	// Defaults to os.Stdout.
	AccessLog io.Writer
}

// Rejection records a resource the harness refused (and NACKed).
type Rejection struct {
	TypeURL string
	Name    string
	Err     error
	Time    time.Time
}

// DataPlane is a running test data plane.
type DataPlane struct {
	log       *slog.Logger
	boot      *bootstrapInfo
	accessLog *accessLogWriter

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ads    *adsClient
	admin  *http.Server

	// snap is what new requests see; replaced as a whole on every update,
	// so a request keeps the configuration it started with.
	snap atomic.Pointer[snapshot]

	mu         sync.Mutex
	clusters   map[string]*cluster // static and dynamic
	routes     map[string]*routeTable
	listeners  map[string]*runningListener
	connMu     sync.Mutex
	grpcConns  map[string]*grpc.ClientConn // by static cluster, under connMu
	rejections []Rejection
	ready      chan struct{}
	readyOnce  sync.Once
}

type snapshot struct {
	clusters map[string]*cluster
	routes   map[string]*routeTable
}

// New parses the bootstrap, starts the admin /ready endpoint and the ADS
// client, and returns. Listeners start as their configuration arrives: use
// WaitReady, then Addr.
func New(ctx context.Context, cfg Config) (*DataPlane, error) {
	boot, err := parseBootstrap(cfg.Bootstrap)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "testdataplane", "node", boot.nodeID)
	out := cfg.AccessLog
	if out == nil {
		out = os.Stdout
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &DataPlane{
		log:       log,
		boot:      boot,
		accessLog: &accessLogWriter{w: out},
		ctx:       ctx,
		cancel:    cancel,
		clusters:  map[string]*cluster{},
		routes:    map[string]*routeTable{},
		listeners: map[string]*runningListener{},
		grpcConns: map[string]*grpc.ClientConn{},
		ready:     make(chan struct{}),
	}
	for name, cc := range boot.static {
		d.clusters[name] = newCluster(cc)
	}
	d.publishLocked()
	if boot.adminAddress != "" {
		if err := d.startAdmin(); err != nil {
			cancel()
			return nil, err
		}
	}
	ads, err := newADSClient(d)
	if err != nil {
		_ = d.Close()
		return nil, err
	}
	d.ads = ads
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		ads.run(ctx)
	}()
	log.Info("test data plane started (a test harness, not a data plane)", "xds_cluster", boot.xdsCluster)
	return d, nil
}

// Run runs a data plane until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	d, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return d.Close()
}

// WaitReady blocks until every listener the control plane sent is serving
// (at least one), or ctx ends.
func (d *DataPlane) WaitReady(ctx context.Context) error {
	select {
	case <-d.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("test data plane not ready: %w", ctx.Err())
	}
}

// Addr is the bound address of the first listener (by name), e.g.
// "127.0.0.1:10000"; empty before any listener serves.
func (d *DataPlane) Addr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	names := make([]string, 0, len(d.listeners))
	for n, l := range d.listeners {
		if l.serving() {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return ""
	}
	sort.Strings(names)
	return d.listeners[names[0]].boundAddr()
}

// ListenerAddr is the bound address of the named listener.
func (d *DataPlane) ListenerAddr(name string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, ok := d.listeners[name]
	if !ok || !l.serving() {
		return "", false
	}
	return l.boundAddr(), true
}

// AdminAddr is the bound admin address, where /ready is served.
func (d *DataPlane) AdminAddr() string {
	if d.admin == nil {
		return ""
	}
	return d.admin.Addr
}

// Rejections lists every resource refused so far.
func (d *DataPlane) Rejections() []Rejection {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.rejections)
}

// Close stops the listeners, the ADS client and the admin endpoint.
func (d *DataPlane) Close() error {
	d.cancel()
	d.mu.Lock()
	listeners := d.listeners
	d.listeners = map[string]*runningListener{}
	d.mu.Unlock()
	// Listeners drain outside the lock: requests in flight may need it.
	var (
		errs []error
		wg   sync.WaitGroup
		emu  sync.Mutex
	)
	for _, l := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.close(); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	d.connMu.Lock()
	for _, c := range d.grpcConns {
		errs = append(errs, c.Close())
	}
	d.grpcConns = map[string]*grpc.ClientConn{}
	d.connMu.Unlock()
	if d.admin != nil {
		errs = append(errs, d.admin.Close())
	}
	if d.ads != nil {
		errs = append(errs, d.ads.close())
	}
	d.wg.Wait()
	return errors.Join(errs...)
}

func (d *DataPlane) startAdmin() error {
	ln, err := net.Listen("tcp", d.boot.adminAddress)
	if err != nil {
		return fmt.Errorf("admin address %s: %w", d.boot.adminAddress, err)
	}
	mux := http.NewServeMux()
	// Envoy's /ready answers 200 LIVE once the server is initialised; it is
	// what readiness probes (and the e2e suites) wait on.
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-d.ready:
			_, _ = io.WriteString(w, "LIVE\n")
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "PRE_INITIALIZING\n")
		}
	})
	d.admin = &http.Server{Addr: ln.Addr().String(), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("admin endpoint stopped", "err", err)
		}
	}()
	return nil
}

// reject records and logs a refused resource.
// The same refusal of the same resource is recorded and logged once.
func (d *DataPlane) rejectLocked(typeURL, name string, err error) {
	for i := len(d.rejections) - 1; i >= 0; i-- {
		r := d.rejections[i]
		if r.TypeURL == typeURL && r.Name == name {
			if r.Err.Error() == err.Error() {
				return
			}
			break
		}
	}
	d.rejections = append(d.rejections, Rejection{TypeURL: typeURL, Name: name, Err: err, Time: time.Now()})
	d.log.Error("resource refused (NACK)", "type", typeURL, "name", name, "err", err)
}

// publishLocked makes the current clusters and routes what new requests see.
func (d *DataPlane) publishLocked() {
	s := &snapshot{clusters: make(map[string]*cluster, len(d.clusters)), routes: make(map[string]*routeTable, len(d.routes))}
	for k, v := range d.clusters {
		s.clusters[k] = v
	}
	for k, v := range d.routes {
		s.routes[k] = v
	}
	d.snap.Store(s)
}

// applyClusters applies a state-of-the-world CDS response: valid clusters
// are added or updated, clusters not in the response are removed, and a
// refused cluster keeps its previous version, as Envoy does.
func (d *DataPlane) applyClusters(resources []*anypb.Any) []error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	inResponse := map[string]bool{}
	for _, a := range resources {
		c := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			err = fmt.Errorf("cluster resource of type %s does not decode: %w", a.GetTypeUrl(), err)
			d.rejectLocked(a.GetTypeUrl(), "", err)
			errs = append(errs, err)
			continue
		}
		inResponse[c.GetName()] = true
		if _, static := d.boot.static[c.GetName()]; static {
			err := fmt.Errorf("cluster %q: a static cluster cannot be replaced over CDS", c.GetName())
			d.rejectLocked(a.GetTypeUrl(), c.GetName(), err)
			errs = append(errs, err)
			continue
		}
		if err := c.ValidateAll(); err != nil {
			err = fmt.Errorf("cluster %q: %w", c.GetName(), err)
			d.rejectLocked(a.GetTypeUrl(), c.GetName(), err)
			errs = append(errs, err)
			continue
		}
		if err := checkModelled("cluster", c.GetName(), c); err != nil {
			d.rejectLocked(a.GetTypeUrl(), c.GetName(), err)
			errs = append(errs, err)
			continue
		}
		if old := d.clusters[c.GetName()]; old != nil && old.sameConfig(c) {
			continue
		}
		cc, err := buildCluster(c, d.staticNames())
		if err != nil {
			d.rejectLocked(a.GetTypeUrl(), c.GetName(), err)
			errs = append(errs, err)
			continue
		}
		if old := d.clusters[c.GetName()]; old != nil {
			old.close()
		}
		d.clusters[c.GetName()] = newCluster(cc)
	}
	for name, c := range d.clusters {
		if _, static := d.boot.static[name]; !static && !inResponse[name] {
			c.close()
			delete(d.clusters, name)
		}
	}
	d.publishLocked()
	return errs
}

func (d *DataPlane) staticNames() staticNames {
	out := staticNames{}
	for n := range d.boot.static {
		out[n] = true
	}
	return out
}

// applyListeners applies a state-of-the-world LDS response and returns the
// route configuration names the listeners need.
func (d *DataPlane) applyListeners(resources []*anypb.Any) ([]error, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	inResponse := map[string]bool{}
	for _, a := range resources {
		l := &listenerv3.Listener{}
		if err := a.UnmarshalTo(l); err != nil {
			err = fmt.Errorf("listener resource of type %s does not decode: %w", a.GetTypeUrl(), err)
			d.rejectLocked(a.GetTypeUrl(), "", err)
			errs = append(errs, err)
			continue
		}
		inResponse[l.GetName()] = true
		if err := l.ValidateAll(); err != nil {
			err = fmt.Errorf("listener %q: %w", l.GetName(), err)
			d.rejectLocked(a.GetTypeUrl(), l.GetName(), err)
			errs = append(errs, err)
			continue
		}
		if err := checkModelled("listener", l.GetName(), l); err != nil {
			d.rejectLocked(a.GetTypeUrl(), l.GetName(), err)
			errs = append(errs, err)
			continue
		}
		lc, err := buildListener(l)
		if err == nil {
			err = d.checkExtProcClusters(lc.hcm.extProc)
		}
		if err != nil {
			d.rejectLocked(a.GetTypeUrl(), l.GetName(), err)
			errs = append(errs, err)
			continue
		}
		if err := d.upsertListenerLocked(lc); err != nil {
			err = fmt.Errorf("listener %q: %w", l.GetName(), err)
			d.rejectLocked(a.GetTypeUrl(), l.GetName(), err)
			errs = append(errs, err)
		}
	}
	for name, l := range d.listeners {
		if !inResponse[name] {
			d.drain(l)
			delete(d.listeners, name)
		}
	}
	d.checkReadyLocked()
	return errs, d.rdsNamesLocked()
}

func (d *DataPlane) checkExtProcClusters(cs []*extProcConfig) error {
	var errs []error
	for _, c := range cs {
		if _, ok := d.boot.static[c.cluster]; !ok {
			errs = append(errs, fmt.Errorf("http filter %q: ext_proc cluster %q is not a static cluster of the bootstrap", c.name, c.cluster))
		}
	}
	return errors.Join(errs...)
}

func (d *DataPlane) rdsNamesLocked() []string {
	set := map[string]bool{}
	for _, l := range d.listeners {
		set[l.config().hcm.rdsName] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// applyRoutes applies an RDS response. RDS is not a wildcard type: route
// configurations missing from a response are kept.
func (d *DataPlane) applyRoutes(resources []*anypb.Any) []error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, a := range resources {
		rc := &routev3.RouteConfiguration{}
		if err := a.UnmarshalTo(rc); err != nil {
			err = fmt.Errorf("route resource of type %s does not decode: %w", a.GetTypeUrl(), err)
			d.rejectLocked(a.GetTypeUrl(), "", err)
			errs = append(errs, err)
			continue
		}
		if err := rc.ValidateAll(); err != nil {
			err = fmt.Errorf("route configuration %q: %w", rc.GetName(), err)
			d.rejectLocked(a.GetTypeUrl(), rc.GetName(), err)
			errs = append(errs, err)
			continue
		}
		if err := checkModelled("route configuration", rc.GetName(), rc); err != nil {
			d.rejectLocked(a.GetTypeUrl(), rc.GetName(), err)
			errs = append(errs, err)
			continue
		}
		rt, err := buildRouteTable(rc)
		if err != nil {
			d.rejectLocked(a.GetTypeUrl(), rc.GetName(), err)
			errs = append(errs, err)
			continue
		}
		d.routes[rc.GetName()] = rt
	}
	d.publishLocked()
	// Listeners warming for these routes can serve now.
	for _, l := range d.listeners {
		if !l.serving() && d.routes[l.config().hcm.rdsName] != nil {
			if err := l.start(); err != nil {
				d.log.Error("listener cannot start", "listener", l.config().name, "err", err)
			}
		}
	}
	d.checkReadyLocked()
	return errs
}

func (d *DataPlane) checkReadyLocked() {
	if len(d.listeners) == 0 {
		return
	}
	for _, l := range d.listeners {
		if !l.serving() {
			return
		}
	}
	d.readyOnce.Do(func() {
		d.log.Info("test data plane ready", "listeners", len(d.listeners))
		close(d.ready)
	})
}

// drain closes a removed or moved listener in the background, letting its
// requests in flight finish as Envoy's listener drain does.
func (d *DataPlane) drain(l *runningListener) {
	go func() {
		if err := l.close(); err != nil {
			d.log.Warn("closing a listener", "listener", l.config().name, "err", err)
		}
	}()
}

// upsertListenerLocked starts a new listener, or updates a running one in
// place when its address is unchanged (new requests get the new config).
func (d *DataPlane) upsertListenerLocked(lc *listenerConfig) error {
	if old := d.listeners[lc.name]; old != nil {
		if old.config().address == lc.address {
			old.cfg.Store(lc)
			return nil
		}
		d.drain(old)
		delete(d.listeners, lc.name)
	}
	rl := newRunningListener(d, lc)
	if err := rl.bind(); err != nil {
		return err
	}
	d.listeners[lc.name] = rl
	if d.routes[lc.hcm.rdsName] != nil {
		return rl.start()
	}
	return nil // warming until its routes arrive
}
