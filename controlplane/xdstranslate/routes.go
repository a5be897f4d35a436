package xdstranslate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previouspriorities "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/controlplane/ir"
)

// notFoundBody is what a request gets when no route matched: ext_proc
// answers unknown models itself, so this is only reached when it let a
// request through without choosing a model.
const notFoundBody = `{"error":{"message":"No model route matched this request. Send an OpenAI or Anthropic API request with a model your key may use.","type":"invalid_request_error","param":null,"code":"not_found"}}`

// routeConfiguration has one route per model and a default route.
func routeConfiguration(routes []*routev3.Route) *routev3.RouteConfiguration {
	all := make([]*routev3.Route, 0, len(routes)+1)
	all = append(all, routes...)
	all = append(all, defaultRoute())
	return &routev3.RouteConfiguration{
		Name: RouteConfigName,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    "tollgate",
			Domains: []string{"*"},
			Routes:  all,
		}},
		// A client must not pick a route itself: the header is removed from
		// requests that arrive from outside before any filter sees them.
		InternalOnlyHeaders:     []string{RouteHeader},
		ResponseHeadersToRemove: []string{RouteHeader},
	}
}

func defaultRoute() *routev3.Route {
	return &routev3.Route{
		Name:  "no-route",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: 404,
			Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: notFoundBody}},
		}},
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: "content-type", Value: "application/json"},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
	}
}

// modelRoute sends requests that ext_proc marked with name to the cluster
// of that name, which serves m, retrying connection failures, resets, 5xx
// and 429 on the next priority.
func modelRoute(name string, m *ir.Model, o Options) *routev3.Route {
	return &routev3.Route{
		Name: name,
		Match: &routev3.RouteMatch{
			PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
			Headers: []*routev3.HeaderMatcher{{
				Name: RouteHeader,
				HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
					MatchPattern: &matcherv3.StringMatcher_Exact{Exact: name},
				}},
			}},
		},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name},
			Timeout:          dur(o.RouteTimeout),
			IdleTimeout:      dur(o.StreamIdleTimeout),
			// :authority becomes the selected endpoint's hostname, so each
			// provider sees its own host whichever deployment serves a try.
			HostRewriteSpecifier: &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)},
			RetryPolicy:          retryPolicy(m, o),
		}},
		RequestHeadersToRemove: []string{RouteHeader},
	}
}

func retryPolicy(m *ir.Model, o Options) *routev3.RetryPolicy {
	levels := uint32(0)
	for _, r := range m.DenseRanks() {
		levels = max(levels, uint32(r)+1)
	}
	// One retry per fallback level, and at least one for a transient
	// failure of a single deployment; never more than MaxRetries.
	retries := min(max(levels-1, 1), o.MaxRetries)
	return &routev3.RetryPolicy{
		RetryOn:              "connect-failure,refused-stream,reset,5xx,retriable-status-codes",
		RetriableStatusCodes: []uint32{429},
		NumRetries:           wrapperspb.UInt32(retries),
		PerTryIdleTimeout:    dur(o.PerTryIdleTimeout),
		RetryPriority: &routev3.RetryPolicy_RetryPriority{
			Name: "envoy.retry_priorities.previous_priorities",
			ConfigType: &routev3.RetryPolicy_RetryPriority_TypedConfig{TypedConfig: mustAny(&previouspriorities.PreviousPrioritiesConfig{
				UpdateFrequency: 1,
			})},
		},
		RetryBackOff: &routev3.RetryPolicy_RetryBackOff{
			BaseInterval: dur(25e6),
			MaxInterval:  dur(250e6),
		},
	}
}
