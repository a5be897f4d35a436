// Package xdstranslate turns the gateway's in-memory view (package ir) into
// what the control plane serves: Envoy listeners, routes and clusters, and
// the tollgate.config.v1 resources that ext_proc servers hold in memory.
// Everything here is a pure function of its inputs; nothing reads the store.
//
// The Envoy configuration, in one paragraph: one listener whose HTTP
// connection manager runs the downstream ext_proc filter and the router. The
// downstream ext_proc authenticates the key, reads the model from the body,
// applies policy and sets the x-tollgate-route header with
// clear_route_cache; that header selects the model's route. Each model has
// one cluster in which every deployment is a locality, with the deployment's
// priority (as a dense rank) and weight, so that Envoy's own retries with
// previous_priorities fall back to the next deployment. A second ext_proc
// filter runs as an upstream HTTP filter of the cluster, once per try: it
// learns from the selected host's metadata which deployment Envoy picked and
// translates the request for that provider (path, body, credential), so a
// fallback from OpenAI to Anthropic is translated correctly on each try.
// docs/design.md has the reasons.
package xdstranslate

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Names shared by the translator, the bootstrap in envoy/ and ext_proc.
const (
	ListenerName    = "tollgate"
	RouteConfigName = "tollgate"
	// ExtProcCluster is defined in Envoy's bootstrap (envoy/bootstrap.yaml),
	// not over CDS: it points at the ext_proc sidecar, an address of the pod.
	ExtProcCluster = "tollgate_extproc"
	// RouteHeader carries the route ext_proc chose; internal only.
	RouteHeader = "x-tollgate-route"
	// MetadataNamespace holds Tollgate's endpoint metadata, and the stream
	// dynamic metadata the downstream ext_proc may write: ClientAPIKey
	// names the client's API, ClientAPIAnthropic or ClientAPIOpenAI.
	MetadataNamespace  = "tollgate"
	ClientAPIKey       = "client_api"
	ClientAPIAnthropic = "anthropic"
	ClientAPIOpenAI    = "openai"
	// NodeListenPortKey, in a node's bootstrap metadata under
	// MetadataNamespace (node.metadata.tollgate.listen_port), asks the
	// control plane for a listener on that port instead of ListenPort, so
	// that several Envoys can share one host. Envoy ignores it.
	NodeListenPortKey = "listen_port"
	// DeploymentAttribute is the CEL attribute by which the upstream ext_proc
	// learns which deployment Envoy selected for a try.
	DeploymentAttribute = "xds.upstream_host_metadata.filter_metadata['tollgate']['deployment']"
	// DownstreamFilterName and UpstreamFilterName name the two ext_proc
	// filters; ext_proc tells its streams apart by attributes, not by name.
	DownstreamFilterName = "envoy.filters.http.ext_proc"
	UpstreamFilterName   = "envoy.filters.http.ext_proc"
)

// Options are the data-plane settings that do not come from the store.
type Options struct {
	// ListenAddress and ListenPort are where Envoy accepts client traffic.
	ListenAddress string
	ListenPort    uint32
	// MaxRequestBytes bounds a buffered request body (and so the largest
	// prompt, images included); Envoy answers 413 above it.
	MaxRequestBytes uint32
	// MessageTimeout is how long Envoy waits for each ext_proc reply. The
	// default 200 ms is too short for large bodies.
	MessageTimeout time.Duration
	// RouteTimeout bounds a whole request, retries included, until the last
	// byte of the response; long streams need minutes.
	RouteTimeout time.Duration
	// StreamIdleTimeout ends a stream that sends nothing for this long.
	StreamIdleTimeout time.Duration
	// PerTryIdleTimeout moves on to the next try when a provider sends
	// nothing for this long before its response starts.
	PerTryIdleTimeout time.Duration
	// MaxRetries caps the retries of one request across deployments.
	MaxRetries uint32
	// XFFTrustedHops is how many proxies in front of Envoy append to
	// X-Forwarded-For; it decides which address is the client's.
	XFFTrustedHops uint32
	// TrustedCAFile, if set, replaces the system trust store for provider
	// TLS (for private CAs, and for tests).
	TrustedCAFile string
	// ConnectTimeout bounds TCP and TLS connection setup to a provider.
	ConnectTimeout time.Duration
}

// DefaultOptions are production defaults.
func DefaultOptions() Options {
	return Options{
		ListenAddress:     "0.0.0.0",
		ListenPort:        10000,
		MaxRequestBytes:   32 << 20,
		MessageTimeout:    10 * time.Second,
		RouteTimeout:      10 * time.Minute,
		StreamIdleTimeout: 2 * time.Minute,
		PerTryIdleTimeout: time.Minute,
		MaxRetries:        3,
		ConnectTimeout:    5 * time.Second,
	}
}

// Validate checks the options before any translation.
func (o Options) Validate() error {
	var errs []error
	if _, err := netip.ParseAddr(o.ListenAddress); err != nil {
		errs = append(errs, fmt.Errorf("listen address %q is not an IP address", o.ListenAddress))
	}
	if o.ListenPort == 0 || o.ListenPort > 65535 {
		errs = append(errs, fmt.Errorf("listen port %d is out of range", o.ListenPort))
	}
	if o.MaxRequestBytes < 64<<10 {
		errs = append(errs, fmt.Errorf("max request bytes %d is below 64 KiB", o.MaxRequestBytes))
	}
	for name, d := range map[string]time.Duration{
		"message timeout": o.MessageTimeout, "route timeout": o.RouteTimeout,
		"stream idle timeout": o.StreamIdleTimeout, "per-try idle timeout": o.PerTryIdleTimeout,
		"connect timeout": o.ConnectTimeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if o.MaxRetries > 10 {
		errs = append(errs, fmt.Errorf("max retries %d is above 10", o.MaxRetries))
	}
	return errors.Join(errs...)
}
