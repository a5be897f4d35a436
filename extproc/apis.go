package extproc

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/tollgate-dev/tollgate/extproc/translate"
)

// endpoint is what a client asked for, by method and path.
type endpoint struct {
	api translate.ClientAPI // 0 for the endpoints ext_proc answers itself
	// listModels / getModel are answered from configuration.
	listModels bool
	getModel   string
}

// route maps a request line to an endpoint, or to the error a client gets
// for an unknown one (in the OpenAI error shape, which is what SDKs of every
// API parse for a 404).
func route(method, path string) (endpoint, *translate.Error) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	path = strings.TrimSuffix(path, "/")
	want := http.MethodPost
	var ep endpoint
	switch {
	case path == "/v1/chat/completions":
		ep.api = translate.OpenAIChat
	case path == "/v1/embeddings":
		ep.api = translate.OpenAIEmbeddings
	case path == "/v1/responses":
		ep.api = translate.OpenAIResponses
	case path == "/v1/messages":
		ep.api = translate.AnthropicMessages
	case path == "/v1/models":
		ep.listModels, want = true, http.MethodGet
	case strings.HasPrefix(path, "/v1/models/"):
		ep.getModel, want = strings.TrimPrefix(path, "/v1/models/"), http.MethodGet
	default:
		return endpoint{}, &translate.Error{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "unknown_url",
			Message: fmt.Sprintf("Unknown request URL: %s %s. Tollgate serves POST /v1/chat/completions, /v1/embeddings, /v1/responses, /v1/messages and GET /v1/models.", method, path)}
	}
	if method != want {
		return endpoint{}, &translate.Error{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error", Code: "method_not_allowed",
			Message: fmt.Sprintf("%s %s is not supported; use %s.", method, path, want)}
	}
	return ep, nil
}

// apiOf picks the error shape for a path before the endpoint is known:
// Anthropic clients get Anthropic's.
func apiOf(path string) translate.ClientAPI {
	if strings.HasPrefix(path, "/v1/messages") {
		return translate.AnthropicMessages
	}
	return translate.OpenAIChat
}
