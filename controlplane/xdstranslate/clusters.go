package xdstranslate

import (
	"fmt"
	"net/url"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamcodecv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/controlplane/ir"
)

const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// endpoint is where one deployment is reached.
type endpoint struct {
	deployment ir.Deployment
	provider   *ir.Provider
	rank       int32
	host       string
	port       uint32
	tls        bool
}

// parseEndpoint reads host, port and scheme from a provider's base URL.
func parseEndpoint(p *ir.Provider) (host string, port uint32, tls bool, err error) {
	u, err := url.Parse(p.BaseURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", 0, false, fmt.Errorf("provider %s (%s): base URL %q is not an absolute http(s) URL", p.Name, p.ID, p.BaseURL)
	}
	tls = u.Scheme == "https"
	host = u.Hostname()
	port = 80
	if tls {
		port = 443
	}
	if ps := u.Port(); ps != "" {
		n, err := strconv.ParseUint(ps, 10, 16)
		if err != nil || n == 0 {
			return "", 0, false, fmt.Errorf("provider %s (%s): base URL %q has a bad port", p.Name, p.ID, p.BaseURL)
		}
		port = uint32(n)
	}
	return host, port, tls, nil
}

// supportsHTTP2 lists the hosted APIs known to speak HTTP/2 over TLS. Other
// OpenAI-compatible servers get HTTP/1.1, which every one of them speaks.
func supportsHTTP2(kind string) bool {
	switch kind {
	case ir.KindOpenAI, ir.KindAnthropic, ir.KindGemini, ir.KindAzureOpenAI:
		return true
	}
	return false
}

// modelCluster is the cluster of one model. Each deployment is a locality
// with its priority rank and weight, so that weights split traffic within a
// priority and a retry moves to the next priority (previous_priorities).
// STRICT_DNS because a cluster holds several hosts (LOGICAL_DNS allows one)
// and provider addresses change: Envoy re-resolves them (every 5 s by
// default).
func modelCluster(name string, eps []endpoint, o Options) *clusterv3.Cluster {
	allTLS, allH2 := true, true
	var matches []*clusterv3.Cluster_TransportSocketMatch
	seenTLS := map[string]bool{}
	localities := make([]*endpointv3.LocalityLbEndpoints, 0, len(eps))
	for _, ep := range eps {
		allTLS = allTLS && ep.tls
		allH2 = allH2 && supportsHTTP2(ep.provider.Kind)
		meta := map[string]*structpb.Struct{
			MetadataNamespace: mustStruct(map[string]any{
				"deployment": ep.deployment.ID.String(),
				"provider":   ep.provider.ID.String(),
			}),
		}
		if ep.tls {
			meta["envoy.transport_socket_match"] = mustStruct(map[string]any{"provider": ep.provider.ID.String()})
		}
		localities = append(localities, &endpointv3.LocalityLbEndpoints{
			Locality:            &corev3.Locality{SubZone: ep.deployment.ID.String()},
			Priority:            uint32(ep.rank),
			LoadBalancingWeight: wrapperspb.UInt32(uint32(ep.deployment.Weight)),
			LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address:  socketAddress(ep.host, ep.port),
					Hostname: ep.host,
				}},
				Metadata: &corev3.Metadata{FilterMetadata: meta},
			}},
		})
	}
	useH2 := allTLS && allH2
	for _, ep := range eps {
		if ep.tls && !seenTLS[ep.provider.ID.String()] {
			seenTLS[ep.provider.ID.String()] = true
			matches = append(matches, &clusterv3.Cluster_TransportSocketMatch{
				Name:            "provider-" + ep.provider.ID.String(),
				Match:           mustStruct(map[string]any{"provider": ep.provider.ID.String()}),
				TransportSocket: upstreamTLS(ep.host, useH2, o),
			})
		}
	}
	return &clusterv3.Cluster{
		Name:                          name,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		ConnectTimeout:                dur(o.ConnectTimeout),
		DnsLookupFamily:               clusterv3.Cluster_V4_PREFERRED,
		LbPolicy:                      clusterv3.Cluster_ROUND_ROBIN,
		CommonLbConfig:                &clusterv3.Cluster_CommonLbConfig{LocalityConfigSpecifier: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{}}},
		LoadAssignment:                &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: localities},
		TransportSocketMatches:        matches,
		TypedExtensionProtocolOptions: map[string]*anypb.Any{httpProtocolOptionsKey: mustAny(upstreamProtocol(useH2, o))},
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:           corev3.RoutingPriority_DEFAULT,
			MaxConnections:     wrapperspb.UInt32(4096),
			MaxPendingRequests: wrapperspb.UInt32(4096),
			MaxRequests:        wrapperspb.UInt32(8192),
			MaxRetries:         wrapperspb.UInt32(256),
		}}},
		// A deployment that keeps failing is ejected for a while, so new
		// requests go straight to the next priority instead of retrying.
		OutlierDetection: &clusterv3.OutlierDetection{
			Consecutive_5Xx:                    wrapperspb.UInt32(5),
			ConsecutiveGatewayFailure:          wrapperspb.UInt32(5),
			EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
			Interval:                           dur(10e9),
			BaseEjectionTime:                   dur(30e9),
			MaxEjectionPercent:                 wrapperspb.UInt32(100),
		},
	}
}

// upstreamProtocol sets the HTTP version and the upstream filter chain: the
// per-try ext_proc, then the codec filter that every upstream chain ends in.
func upstreamProtocol(h2 bool, o Options) *httpv3.HttpProtocolOptions {
	opts := &httpv3.HttpProtocolOptions{
		HttpFilters: []*hcmv3.HttpFilter{
			upstreamExtProc(o),
			{Name: "envoy.filters.http.upstream_codec", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&upstreamcodecv3.UpstreamCodec{})}},
		},
	}
	if h2 {
		opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_AutoConfig{AutoConfig: &httpv3.HttpProtocolOptions_AutoHttpConfig{
			HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
			Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
		}}
	} else {
		opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
		}}
	}
	return opts
}
