package xdstranslate

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// listener is the one client-facing listener.
func listener(o Options) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "tollgate",
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: RouteConfigName,
			ConfigSource:    adsSource(),
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			downstreamExtProc(o),
			{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}},
		},
		// Envoy's request id joins the access log, ext_proc's two streams of
		// one request, and the usage record; external ids are replaced, so a
		// client cannot choose the id its usage is deduplicated by.
		GenerateRequestId: wrapperspb.Bool(true),
		UseRemoteAddress:  wrapperspb.Bool(true),
		XffNumTrustedHops: o.XFFTrustedHops,
		StreamIdleTimeout: dur(o.StreamIdleTimeout),
		NormalizePath:     wrapperspb.Bool(true),
		MergeSlashes:      true,
		AccessLog:         accessLog(),
		LocalReplyConfig:  localReplyConfig(o),
	}
	return &listenerv3.Listener{
		Name:    ListenerName,
		Address: socketAddress(o.ListenAddress, o.ListenPort),
		// A buffered request body must fit: prompts with images are large.
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(o.MaxRequestBytes),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
			}},
		}},
	}
}
