package testdataplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Cluster defaults (cluster.proto, circuit_breaker.proto, outlier_detection.proto).
const (
	defaultConnectTimeout     = 5 * time.Second
	defaultCircuitBreakerMax  = 1024
	defaultMaxRetries         = 3
	httpProtocolOptionsKey    = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	transportSocketMatchKey   = "envoy.transport_socket_match"
	overprovisioningFactor    = 140 // percent, Envoy's default
	defaultPanicThresholdPerc = 50
)

type upstreamProtocol int

const (
	protoHTTP1 upstreamProtocol = iota
	protoHTTP2
	protoAuto // ALPN decides; plaintext falls back to HTTP/1.1
)

// staticNames are the clusters defined in the bootstrap, which the ext_proc
// filters' envoy_grpc services must name.
type staticNames map[string]bool

// clusterConfig is a Cluster as the harness runs it.
type clusterConfig struct {
	proto            *clusterv3.Cluster
	name             string
	strictDNS        bool
	connectTimeout   time.Duration
	dnsFamily        clusterv3.Cluster_DnsLookupFamily
	localityWeighted bool
	localities       []*localityConfig
	protocol         upstreamProtocol
	h2Keepalive      *corev3.KeepaliveSettings
	upstreamExtProc  []*extProcConfig
	maxConnections   int
	maxPending       int
	maxRequests      int
	maxRetries       int
	outlier          *outlierConfig
}

type localityConfig struct {
	name      string
	priority  int
	weight    uint32
	endpoints []*endpointConfig
}

type endpointConfig struct {
	network  string // tcp or unix
	host     string // IP or DNS name (tcp)
	port     int
	path     string // unix
	hostname string
	weight   uint32
	metadata map[string]*structpb.Struct
	tls      *tlsConfig // nil: plaintext
}

// outlierConfig is the modelled part of OutlierDetection.
type outlierConfig struct {
	consecutive5xx     int
	consecutiveGateway int
	enforcing5xx       int
	enforcingGateway   int
	interval           time.Duration
	baseEjectionTime   time.Duration
	maxEjectionTime    time.Duration
	maxEjectionPercent int
}

func buildCluster(c *clusterv3.Cluster, static staticNames) (*clusterConfig, error) {
	var errs []error
	out := &clusterConfig{
		proto:          c,
		name:           c.GetName(),
		connectTimeout: defaultConnectTimeout,
		dnsFamily:      c.GetDnsLookupFamily(),
		maxConnections: defaultCircuitBreakerMax,
		maxPending:     defaultCircuitBreakerMax,
		maxRequests:    defaultCircuitBreakerMax,
		maxRetries:     defaultMaxRetries,
	}
	switch c.GetType() {
	case clusterv3.Cluster_STATIC:
	case clusterv3.Cluster_STRICT_DNS:
		out.strictDNS = true
	default:
		errs = append(errs, fmt.Errorf("cluster type %v is not modelled", c.GetType()))
	}
	if c.GetConnectTimeout() != nil {
		out.connectTimeout = c.GetConnectTimeout().AsDuration()
	}
	out.localityWeighted = c.GetCommonLbConfig().GetLocalityWeightedLbConfig() != nil
	if la := c.GetLoadAssignment(); la == nil {
		errs = append(errs, errors.New("load_assignment is required (EDS is not modelled)"))
	} else if la.GetClusterName() != "" && la.GetClusterName() != c.GetName() {
		errs = append(errs, fmt.Errorf("load_assignment.cluster_name %q differs from the cluster name", la.GetClusterName()))
	}

	// Transport sockets: the cluster's default, then per-endpoint matches.
	var defaultTLS *tlsConfig
	if ts := c.GetTransportSocket(); ts != nil {
		t, err := transportTLS(ts)
		if err != nil {
			errs = append(errs, fmt.Errorf("transport_socket: %w", err))
		}
		defaultTLS = t
	}
	type tsMatch struct {
		match *structpb.Struct
		tls   *tlsConfig
	}
	var matches []tsMatch
	for _, m := range c.GetTransportSocketMatches() {
		t, err := transportTLS(m.GetTransportSocket())
		if err != nil {
			errs = append(errs, fmt.Errorf("transport_socket_matches %q: %w", m.GetName(), err))
			continue
		}
		matches = append(matches, tsMatch{match: m.GetMatch(), tls: t})
	}
	pickTLS := func(md map[string]*structpb.Struct) *tlsConfig {
		crit := md[transportSocketMatchKey]
		for _, m := range matches {
			if structSubset(m.match, crit) {
				return m.tls
			}
		}
		return defaultTLS
	}

	maxPriority := -1
	seen := map[int]bool{}
	for _, l := range c.GetLoadAssignment().GetEndpoints() {
		lc := &localityConfig{
			name:     fmt.Sprintf("%s/%s/%s", l.GetLocality().GetRegion(), l.GetLocality().GetZone(), l.GetLocality().GetSubZone()),
			priority: int(l.GetPriority()),
		}
		if l.GetLoadBalancingWeight() != nil {
			lc.weight = l.GetLoadBalancingWeight().GetValue()
		}
		seen[lc.priority] = true
		maxPriority = max(maxPriority, lc.priority)
		for _, e := range l.GetLbEndpoints() {
			ep := e.GetEndpoint()
			ec := &endpointConfig{hostname: ep.GetHostname(), weight: 1, metadata: e.GetMetadata().GetFilterMetadata()}
			if e.GetLoadBalancingWeight() != nil {
				ec.weight = e.GetLoadBalancingWeight().GetValue()
			}
			switch {
			case ep.GetAddress().GetSocketAddress() != nil:
				sa := ep.GetAddress().GetSocketAddress()
				ec.network, ec.host, ec.port = "tcp", sa.GetAddress(), int(sa.GetPortValue())
				if _, err := netip.ParseAddr(ec.host); err != nil && !out.strictDNS {
					// Envoy refuses a hostname in a STATIC cluster.
					errs = append(errs, fmt.Errorf("endpoint %q: a STATIC cluster needs IP addresses", ec.host))
				}
			case ep.GetAddress().GetPipe() != nil:
				ec.network, ec.path = "unix", ep.GetAddress().GetPipe().GetPath()
				if out.strictDNS {
					errs = append(errs, errors.New("a STRICT_DNS cluster cannot have pipe endpoints"))
				}
			default:
				errs = append(errs, errors.New("endpoint needs a socket_address or a pipe"))
			}
			ec.tls = pickTLS(ec.metadata)
			lc.endpoints = append(lc.endpoints, ec)
		}
		out.localities = append(out.localities, lc)
	}
	for p := 0; p <= maxPriority; p++ {
		if !seen[p] {
			// Envoy's priorities are contiguous from 0 (endpoint_components.proto).
			errs = append(errs, fmt.Errorf("priority %d is missing: priorities must run from 0 without gaps", p))
		}
	}

	for key, a := range c.GetTypedExtensionProtocolOptions() {
		if key != httpProtocolOptionsKey && key != typeHTTPProtocolOpts[len("type.googleapis.com/"):] {
			errs = append(errs, fmt.Errorf("typed_extension_protocol_options key %q is not modelled", key))
			continue
		}
		po := &httpv3.HttpProtocolOptions{}
		if err := a.UnmarshalTo(po); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := applyProtocolOptions(out, po, static); err != nil {
			errs = append(errs, err)
		}
	}

	for _, th := range c.GetCircuitBreakers().GetThresholds() {
		if v := th.GetMaxConnections(); v != nil {
			out.maxConnections = int(v.GetValue())
		}
		if v := th.GetMaxPendingRequests(); v != nil {
			out.maxPending = int(v.GetValue())
		}
		if v := th.GetMaxRequests(); v != nil {
			out.maxRequests = int(v.GetValue())
		}
		if v := th.GetMaxRetries(); v != nil {
			out.maxRetries = int(v.GetValue())
		}
	}
	if od := c.GetOutlierDetection(); od != nil {
		oc := &outlierConfig{
			consecutive5xx:     uint32Or(od.GetConsecutive_5Xx(), 5),
			consecutiveGateway: uint32Or(od.GetConsecutiveGatewayFailure(), 5),
			enforcing5xx:       uint32Or(od.GetEnforcingConsecutive_5Xx(), 100),
			enforcingGateway:   uint32Or(od.GetEnforcingConsecutiveGatewayFailure(), 0),
			interval:           10 * time.Second,
			baseEjectionTime:   30 * time.Second,
			maxEjectionTime:    300 * time.Second,
			maxEjectionPercent: uint32Or(od.GetMaxEjectionPercent(), 10),
		}
		if od.GetInterval() != nil {
			oc.interval = od.GetInterval().AsDuration()
		}
		if od.GetBaseEjectionTime() != nil {
			oc.baseEjectionTime = od.GetBaseEjectionTime().AsDuration()
		}
		if od.GetMaxEjectionTime() != nil {
			oc.maxEjectionTime = od.GetMaxEjectionTime().AsDuration()
		}
		if oc.interval <= 0 {
			errs = append(errs, errors.New("outlier_detection.interval must be positive"))
		}
		out.outlier = oc
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cluster %q: %w", c.GetName(), err)
	}
	return out, nil
}

func uint32Or(v *wrapperspb.UInt32Value, def int) int {
	if v == nil {
		return def
	}
	return int(v.GetValue())
}

func transportTLS(ts *corev3.TransportSocket) (*tlsConfig, error) {
	if ts.GetTypedConfig().GetTypeUrl() != typeUpstreamTLS {
		return nil, fmt.Errorf("transport socket %q is not modelled", ts.GetName())
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		return nil, err
	}
	return buildTLS(ctx)
}

// structSubset reports whether every field of match equals the same field of
// crit: Envoy's transport socket match rule (an empty match matches all).
func structSubset(match, crit *structpb.Struct) bool {
	for k, v := range match.GetFields() {
		cv, ok := crit.GetFields()[k]
		if !ok || !proto.Equal(v, cv) {
			return false
		}
	}
	return true
}

func applyProtocolOptions(out *clusterConfig, po *httpv3.HttpProtocolOptions, static staticNames) error {
	var errs []error
	switch {
	case po.GetExplicitHttpConfig() != nil:
		e := po.GetExplicitHttpConfig()
		switch {
		case e.GetHttpProtocolOptions() != nil:
			out.protocol = protoHTTP1
		case e.GetHttp2ProtocolOptions() != nil:
			out.protocol = protoHTTP2
			out.h2Keepalive = e.GetHttp2ProtocolOptions().GetConnectionKeepalive()
		default:
			errs = append(errs, errors.New("explicit_http_config needs http_protocol_options or http2_protocol_options"))
		}
	case po.GetAutoConfig() != nil:
		out.protocol = protoAuto
	}
	filters := po.GetHttpFilters()
	if len(filters) > 0 && filters[len(filters)-1].GetTypedConfig().GetTypeUrl() != typeUpstreamCodec {
		errs = append(errs, errors.New("the last upstream HTTP filter must be envoy.filters.http.upstream_codec"))
	}
	for i, f := range filters {
		switch f.GetTypedConfig().GetTypeUrl() {
		case typeUpstreamCodec:
			if i != len(filters)-1 {
				errs = append(errs, errors.New("upstream_codec must be the last upstream HTTP filter"))
			}
		case typeExtProc:
			ep := &extprocv3.ExternalProcessor{}
			if err := f.GetTypedConfig().UnmarshalTo(ep); err != nil {
				errs = append(errs, err)
				continue
			}
			c, err := buildExtProc(f.GetName(), ep, true)
			if err != nil {
				errs = append(errs, fmt.Errorf("upstream http filter %q: %w", f.GetName(), err))
				continue
			}
			if !static[c.cluster] {
				errs = append(errs, fmt.Errorf("upstream http filter %q: ext_proc cluster %q is not a static cluster of the bootstrap", f.GetName(), c.cluster))
			}
			out.upstreamExtProc = append(out.upstreamExtProc, c)
		default:
			errs = append(errs, fmt.Errorf("upstream http filter %q: type %s is not modelled", f.GetName(), f.GetTypedConfig().GetTypeUrl()))
		}
	}
	return errors.Join(errs...)
}

// cluster is a running cluster: its hosts, their connection pools, and the
// state circuit breakers and outlier detection keep.
type cluster struct {
	cfg     *clusterConfig
	created time.Time
	// byPriority[p] are the localities of priority p.
	byPriority [][]*locality
	hosts      []*host

	activeRequests atomic.Int64
	pending        atomic.Int64
	activeRetries  atomic.Int64

	mu sync.Mutex // outlier state of every host
}

type locality struct {
	cfg   *localityConfig
	hosts []*host
	rr    atomic.Uint64
}

// host is one lb_endpoint.
type host struct {
	cl       *cluster
	cfg      *endpointConfig
	priority int
	loc      *locality

	once      sync.Once
	transport *http.Transport

	// Outlier detection, guarded by cl.mu.
	consecutive5xx     int
	consecutiveGateway int
	ejected            bool
	ejectUntil         time.Time
	ejections          int
}

func newCluster(cfg *clusterConfig) *cluster {
	c := &cluster{cfg: cfg, created: time.Now()}
	for _, lc := range cfg.localities {
		for len(c.byPriority) <= lc.priority {
			c.byPriority = append(c.byPriority, nil)
		}
		l := &locality{cfg: lc}
		for _, ec := range lc.endpoints {
			h := &host{cl: c, cfg: ec, priority: lc.priority, loc: l}
			l.hosts = append(l.hosts, h)
			c.hosts = append(c.hosts, h)
		}
		c.byPriority[lc.priority] = append(c.byPriority[lc.priority], l)
	}
	return c
}

// close releases idle upstream connections of a cluster that was replaced;
// requests in flight keep theirs.
func (c *cluster) close() {
	for _, h := range c.hosts {
		if h.transport != nil {
			h.transport.CloseIdleConnections()
		}
	}
}

// address is how the access log names the host before a connection exists.
func (h *host) address() string {
	if h.cfg.network == "unix" {
		return h.cfg.path
	}
	return net.JoinHostPort(h.cfg.host, strconv.Itoa(h.cfg.port))
}

func (h *host) scheme() string {
	if h.cfg.tls != nil {
		return "https"
	}
	return "http"
}

// connectError is a failure to establish the upstream connection (TCP or
// TLS), as opposed to a failure on an established one.
type connectError struct {
	timeout bool
	reason  string // UPSTREAM_TRANSPORT_FAILURE_REASON
	err     error
}

func (e *connectError) Error() string { return "upstream connect error: " + e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// dial opens a connection to the host within the cluster's connect_timeout,
// TLS handshake included, resolving DNS names with Go's resolver as the
// cluster's dns_lookup_family says.
func (h *host) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cl.cfg.connectTimeout)
	defer cancel()
	conn, err := h.dialRaw(ctx)
	if err != nil {
		return nil, &connectError{timeout: errors.Is(err, context.DeadlineExceeded) || isTimeout(err), err: err}
	}
	if h.cfg.tls == nil {
		return conn, nil
	}
	tc := tls.Client(conn, h.cfg.tls.clientConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, &connectError{timeout: errors.Is(err, context.DeadlineExceeded), reason: err.Error(), err: err}
	}
	return tc, nil
}

func (h *host) dialRaw(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	if h.cfg.network == "unix" {
		return d.DialContext(ctx, "unix", h.cfg.path)
	}
	addrs, err := resolve(ctx, h.cfg.host, h.cl.cfg.dnsFamily)
	if err != nil {
		return nil, err
	}
	var last error
	for _, a := range addrs {
		conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(h.cfg.port)).String())
		if err == nil {
			return conn, nil
		}
		last = err
	}
	return nil, last
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// resolve applies dns_lookup_family to Go's resolver. Envoy makes one host
// per resolved address; the harness keeps one host per endpoint and
// resolves on every new connection, which is at least as fresh as
// respect_dns_ttl.
func resolve(ctx context.Context, name string, family clusterv3.Cluster_DnsLookupFamily) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{a}, nil
	}
	all, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
	if err != nil {
		return nil, fmt.Errorf("DNS resolution of %s failed: %w", name, err)
	}
	var v4, v6 []netip.Addr
	for _, a := range all {
		if a.Unmap().Is4() {
			v4 = append(v4, a.Unmap())
		} else {
			v6 = append(v6, a)
		}
	}
	var out []netip.Addr
	switch family {
	case clusterv3.Cluster_V4_ONLY:
		out = v4
	case clusterv3.Cluster_V6_ONLY:
		out = v6
	case clusterv3.Cluster_V4_PREFERRED:
		out = v4
		if len(out) == 0 {
			out = v6
		}
	case clusterv3.Cluster_ALL:
		out = append(append([]netip.Addr(nil), v4...), v6...)
	default: // AUTO prefers IPv6
		out = v6
		if len(out) == 0 {
			out = v4
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("DNS resolution of %s found no address of family %v", name, family)
	}
	return out, nil
}

// roundTripper is the host's connection pool.
func (h *host) roundTripper() *http.Transport {
	h.once.Do(func() {
		cfg := h.cl.cfg
		t := &http.Transport{
			Proxy:               nil,
			DisableCompression:  true, // Envoy forwards bodies as they are
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     time.Hour, // Envoy's upstream idle_timeout default
			// max_connections is enforced per host here (Envoy: per
			// cluster); requests over it wait, as Envoy's pending ones do.
			MaxConnsPerHost: cfg.maxConnections,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return h.dial(ctx)
			},
			DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return h.dial(ctx)
			},
		}
		var p http.Protocols
		switch {
		case cfg.protocol == protoHTTP2:
			p.SetHTTP2(true)
			p.SetUnencryptedHTTP2(true)
			t.ForceAttemptHTTP2 = true
		case cfg.protocol == protoAuto && h.cfg.tls != nil:
			// ALPN picks h2 or HTTP/1.1 per connection.
			p.SetHTTP1(true)
			p.SetHTTP2(true)
			t.ForceAttemptHTTP2 = true
		default:
			p.SetHTTP1(true)
			t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		t.Protocols = &p
		h.transport = t
	})
	return h.transport
}

// outcome is what a try tells outlier detection about its host.
type outcome struct {
	status int  // HTTP status, or the status a local-origin failure maps to
	local  bool // a connect failure or timeout, not a response
}

// report feeds outlier detection. Without split_external_local_origin_errors,
// Envoy maps connect failures to 503 and timeouts to 504 and counts them
// with the responses.
func (c *cluster) report(h *host, o outcome) {
	od := c.cfg.outlier
	if od == nil || h == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.unejectLocked(now)
	if o.status >= 500 && o.status <= 599 {
		h.consecutive5xx++
	} else {
		h.consecutive5xx = 0
	}
	if o.status == 502 || o.status == 503 || o.status == 504 {
		h.consecutiveGateway++
	} else {
		h.consecutiveGateway = 0
	}
	switch {
	case od.consecutive5xx > 0 && h.consecutive5xx >= od.consecutive5xx && enforced(od.enforcing5xx):
		c.ejectLocked(h, now)
	case od.consecutiveGateway > 0 && h.consecutiveGateway >= od.consecutiveGateway && enforced(od.enforcingGateway):
		c.ejectLocked(h, now)
	}
}

// enforced draws the enforcing_* percentage.
func enforced(percent int) bool {
	return percent >= 100 || (percent > 0 && randIntn(100) < percent)
}

func (c *cluster) ejectLocked(h *host, now time.Time) {
	if h.ejected {
		return
	}
	od := c.cfg.outlier
	ejected := 0
	for _, x := range c.hosts {
		if x.ejected {
			ejected++
		}
	}
	// max_ejection_percent, but Envoy always ejects at least one host.
	if ejected > 0 && (ejected+1)*100 > od.maxEjectionPercent*len(c.hosts) {
		return
	}
	h.ejections++
	d := od.baseEjectionTime * time.Duration(h.ejections)
	d = min(d, max(od.baseEjectionTime, od.maxEjectionTime))
	h.ejected = true
	h.ejectUntil = now.Add(d)
	h.consecutive5xx, h.consecutiveGateway = 0, 0
}

// unejectLocked returns hosts whose ejection time has passed. Envoy checks
// on its interval timer, so a host comes back at the first tick after its
// time is up.
func (c *cluster) unejectLocked(now time.Time) {
	od := c.cfg.outlier
	if od == nil {
		return
	}
	for _, h := range c.hosts {
		if !h.ejected {
			continue
		}
		since := h.ejectUntil.Sub(c.created)
		if rem := since % od.interval; rem != 0 {
			since += od.interval - rem
		}
		back := c.created.Add(since)
		if !now.Before(back) {
			h.ejected = false
		}
	}
}

// healthy reports whether outlier detection lets h take traffic.
func (c *cluster) healthySnapshot() map[*host]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unejectLocked(time.Now())
	out := make(map[*host]bool, len(c.hosts))
	for _, h := range c.hosts {
		out[h] = !h.ejected
	}
	return out
}

// sameConfig reports whether a new CDS version of a cluster is unchanged, in
// which case Envoy keeps the running cluster (and its host state).
func (c *cluster) sameConfig(p *clusterv3.Cluster) bool {
	return proto.Equal(c.cfg.proto, p)
}
