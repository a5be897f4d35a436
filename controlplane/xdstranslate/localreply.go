package xdstranslate

import (
	"fmt"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// upstreamFailureFlags are the response flags of the router's own replies
// when no provider answered: no healthy deployment (UH), a connection that
// failed (UF), was closed (UC) or reset (UR), the circuit breaker (UO), a
// timeout (UT), and retries exhausted on such failures (URX). Their bodies
// are Envoy's short explanations ("no healthy upstream", "upstream request
// timeout", "upstream connect error or disconnect/reset before headers…").
var upstreamFailureFlags = []string{"UH", "UF", "UC", "UR", "UO", "UT", "URX"}

// localReplyConfig gives the replies Envoy makes itself the error shape of
// the client's API, so that the SDKs read a message and a type from them
// instead of a line of plain text: a request body over the buffer limit
// (413, which Envoy answers before ext_proc sees the body, so :path is still
// the client's) and the router's upstream failures (503, 504).
//
// Only these are mapped. The replies ext_proc makes (ImmediateResponse, also
// a local reply to Envoy) already have the client's shape: they never use
// 413 and never carry a response flag, so no mapper matches them, and there
// is no catch-all body_format that would rewrite them.
func localReplyConfig(o Options) *hcmv3.LocalReplyConfig {
	tooLarge := fmt.Sprintf("The request body is larger than this gateway accepts (%d bytes). Send a smaller request.", o.MaxRequestBytes)
	upstream := "The gateway could not get a response from the provider: %LOCAL_REPLY_BODY%"
	anthropicUpstream := jsonBody(anthropicError("api_error", upstream))
	openAIUpstream := jsonBody(openAIError("server_error", "upstream_unavailable", upstream))
	return &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{
		{
			Filter:             and(statusIs(413), anthropicPath()),
			BodyFormatOverride: jsonBody(anthropicError("request_too_large", tooLarge)),
		},
		{
			Filter:             statusIs(413),
			BodyFormatOverride: jsonBody(openAIError("invalid_request_error", "request_too_large", tooLarge)),
		},
		// After a try, :path is the provider's (the upstream ext_proc
		// rewrote the request headers, which are the ones Envoy's local
		// reply sees): the client's API comes from the dynamic metadata
		// the downstream ext_proc wrote before routing.
		{
			Filter:             and(upstreamFailed(), clientAPIIs(ClientAPIAnthropic)),
			BodyFormatOverride: anthropicUpstream,
		},
		{
			Filter:             and(upstreamFailed(), clientAPIIs(ClientAPIOpenAI)),
			BodyFormatOverride: openAIUpstream,
		},
		// Without it (no try can start before ext_proc routed the request,
		// so only if ext_proc did not write it), the path decides.
		{
			Filter:             and(upstreamFailed(), anthropicPath()),
			BodyFormatOverride: anthropicUpstream,
		},
		{
			Filter:             upstreamFailed(),
			BodyFormatOverride: openAIUpstream,
		},
	}}
}

// clientAPIIs matches the client API ext_proc wrote in the stream's
// dynamic metadata; not when it wrote none.
func clientAPIIs(api string) *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_MetadataFilter{
		MetadataFilter: &accesslogv3.MetadataFilter{
			Matcher: &matcherv3.MetadataMatcher{
				Filter: MetadataNamespace,
				Path:   []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: ClientAPIKey}}},
				Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
					MatchPattern: &matcherv3.StringMatcher_Exact{Exact: api},
				}}},
			},
			MatchIfKeyNotFound: wrapperspb.Bool(false),
		},
	}}
}

// anthropicError and openAIError are the error bodies of the two APIs, as
// extproc/translate writes them (OpenAI's param is left out: Envoy's JSON
// format has no null).
func anthropicError(typ, message string) map[string]any {
	return map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": message}}
}

func openAIError(typ, code, message string) map[string]any {
	return map[string]any{"error": map[string]any{"message": message, "type": typ, "code": code}}
}

func jsonBody(m map[string]any) *corev3.SubstitutionFormatString {
	return &corev3.SubstitutionFormatString{
		Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: mustStruct(m)},
	}
}

func statusIs(code uint32) *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{
		StatusCodeFilter: &accesslogv3.StatusCodeFilter{Comparison: &accesslogv3.ComparisonFilter{
			Op: accesslogv3.ComparisonFilter_EQ,
			// Envoy requires a runtime key; none is ever set, so the
			// default applies.
			Value: &corev3.RuntimeUInt32{DefaultValue: code, RuntimeKey: fmt.Sprintf("tollgate.local_reply.status_%d", code)},
		}},
	}}
}

// anthropicPath matches the Anthropic Messages API, whose clients expect
// Anthropic's error shape; every other path is OpenAI's.
func anthropicPath() *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_HeaderFilter{
		HeaderFilter: &accesslogv3.HeaderFilter{Header: &routev3.HeaderMatcher{
			Name: ":path",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "/v1/messages"},
			}},
		}},
	}}
}

func upstreamFailed() *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{
		ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{Flags: upstreamFailureFlags},
	}}
}

func and(filters ...*accesslogv3.AccessLogFilter) *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_AndFilter{
		AndFilter: &accesslogv3.AndFilter{Filters: filters},
	}}
}
