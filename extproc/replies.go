package extproc

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
	"github.com/tollgate-dev/tollgate/extproc/translate"
)

// mutation collects header changes for one reply. Values travel in
// raw_value: Envoy sets an empty header for `value` alone (envoy#31555).
type mutation struct {
	set    []*corev3.HeaderValueOption
	remove []string
}

func (m *mutation) setHeader(name, value string) {
	m.set = append(m.set, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: name, RawValue: []byte(value)}})
}

func (m *mutation) removeHeader(names ...string) { m.remove = append(m.remove, names...) }

func (m *mutation) proto() *extprocv3.HeaderMutation {
	if m == nil || (len(m.set) == 0 && len(m.remove) == 0) {
		return nil
	}
	return &extprocv3.HeaderMutation{SetHeaders: m.set, RemoveHeaders: m.remove}
}

func requestHeadersReply(c *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: c}}}
}

func requestBodyReply(c *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: c}}}
}

func responseHeadersReply(c *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{Response: c}}}
}

func responseBodyReply(c *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: c}}}
}

func requestTrailersReply() *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
}

func responseTrailersReply() *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
}

// continueWith is CONTINUE with header changes.
func continueWith(m *mutation) *extprocv3.CommonResponse {
	return &extprocv3.CommonResponse{HeaderMutation: m.proto()}
}

// Replies that change nothing are the same every time: built once and
// shared (a message is only read once built, so sharing is safe).
var (
	continueResponseBody    = responseBodyReply(&extprocv3.CommonResponse{})
	continueResponseHeaders = responseHeadersReply(&extprocv3.CommonResponse{})
	continueRequestBody     = requestBodyReply(&extprocv3.CommonResponse{})
)

// replaceBody is a body reply that replaces this chunk (STREAMED) or the
// whole body (BUFFERED) with b; an empty b clears it.
func replaceBody(b []byte) *extprocv3.CommonResponse {
	if len(b) == 0 {
		return &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{ClearBody: true}}}
	}
	return &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: b}}}
}

// immediate answers the client directly; the request goes no further.
func immediate(status int, contentType string, body []byte, details string) *extprocv3.ProcessingResponse {
	m := &mutation{}
	m.setHeader("content-type", contentType)
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
		Headers: m.proto(),
		Body:    body,
		Details: details,
	}}}
}

// streamResponseBody asks Envoy to send the response body chunk by chunk:
// memory stays bounded by a chunk, SSE events reach the client as they
// arrive, and no buffer limit applies to large answers.
func streamResponseBody() *filterv3.ProcessingMode {
	return &filterv3.ProcessingMode{
		RequestHeaderMode:   filterv3.ProcessingMode_SEND,
		ResponseHeaderMode:  filterv3.ProcessingMode_SEND,
		RequestBodyMode:     filterv3.ProcessingMode_NONE,
		ResponseBodyMode:    filterv3.ProcessingMode_STREAMED,
		RequestTrailerMode:  filterv3.ProcessingMode_SKIP,
		ResponseTrailerMode: filterv3.ProcessingMode_SKIP,
	}
}

// clientAPIMetadata is the stream dynamic metadata that names the client's
// API for Envoy's local reply mappers: after a try the request's :path is
// the provider's, so they cannot tell from it which error shape the client
// reads (controlplane/xdstranslate/localreply.go).
func clientAPIMetadata(api translate.ClientAPI) *structpb.Struct {
	if api == translate.AnthropicMessages {
		return anthropicClientMetadata
	}
	return openAIClientMetadata
}

var (
	anthropicClientMetadata = clientMetadata(xdstranslate.ClientAPIAnthropic)
	openAIClientMetadata    = clientMetadata(xdstranslate.ClientAPIOpenAI)
)

func clientMetadata(api string) *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		xdstranslate.MetadataNamespace: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			xdstranslate.ClientAPIKey: structpb.NewStringValue(api),
		}}),
	}}
}
