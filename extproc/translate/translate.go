// Package translate converts requests and responses between the APIs that
// Tollgate's clients speak (OpenAI Chat Completions, Embeddings and
// Responses; Anthropic Messages) and the APIs of the providers that serve a
// deployment (OpenAI, Azure OpenAI, OpenAI-compatible servers, Anthropic,
// Gemini), and reads token usage from what providers answer.
//
// It is pure: bytes in, bytes out, no I/O and no package state, so that
// ext_proc can call it per request and per SSE chunk, and tests can drive it
// with recorded provider traffic. One file per client-API/provider pair
// (openai_anthropic.go: OpenAI clients served by Anthropic) holds the request
// translation and the response translator of that pair; sse.go and usage.go
// are shared. docs/translation.md has the mapping tables.
//
// A request goes through it like this:
//
//	preq, err := translate.TranslateRequest(api, target, body)
//	if err != nil { answer 400 with err.(*translate.Error).Body(api) }
//	set :path, preq.Headers, translate.CredentialHeaders(kind, secret); remove
//	translate.ClientCredentialHeaders and content-length; send preq.Body
//	rt := translate.NewResponseTranslator(api, target, preq.Response)
//	on response headers: content-type = rt.Headers(status, contentType)
//	on each body chunk: out, err := rt.Chunk(chunk, endOfStream); send out
//	at the end: record rt.Usage()
package translate

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// ClientAPI is the API a client called.
type ClientAPI int

// The client-facing APIs.
const (
	OpenAIChat        ClientAPI = iota + 1 // POST /v1/chat/completions
	OpenAIEmbeddings                       // POST /v1/embeddings
	OpenAIResponses                        // POST /v1/responses
	AnthropicMessages                      // POST /v1/messages
)

func (a ClientAPI) String() string {
	switch a {
	case OpenAIChat:
		return "OpenAI Chat Completions"
	case OpenAIEmbeddings:
		return "OpenAI Embeddings"
	case OpenAIResponses:
		return "OpenAI Responses"
	case AnthropicMessages:
		return "Anthropic Messages"
	}
	return "ClientAPI(" + strconv.Itoa(int(a)) + ")"
}

// ProviderKind is the kind of a provider, spelled as the store spells it.
type ProviderKind string

// The provider kinds.
const (
	KindOpenAI           ProviderKind = "openai"
	KindAnthropic        ProviderKind = "anthropic"
	KindGemini           ProviderKind = "gemini"
	KindAzureOpenAI      ProviderKind = "azure_openai"
	KindOpenAICompatible ProviderKind = "openai_compatible"
)

type family int

const (
	familyUnknown family = iota
	familyOpenAI
	familyAnthropic
	familyGemini
)

// family groups the kinds that speak the same API.
func (k ProviderKind) family() family {
	switch k {
	case KindOpenAI, KindAzureOpenAI, KindOpenAICompatible:
		return familyOpenAI
	case KindAnthropic:
		return familyAnthropic
	case KindGemini:
		return familyGemini
	}
	return familyUnknown
}

// Target is the deployment a request goes to.
type Target struct {
	Kind ProviderKind
	// UpstreamModel is the model's name at the provider; for Azure OpenAI,
	// the deployment name.
	UpstreamModel string
	// APIVersion is Azure's api-version query parameter ("" means
	// DefaultAzureAPIVersion; "v1" selects Azure's version-less /openai/v1
	// API), or the anthropic-version header for Anthropic ("" means
	// DefaultAnthropicVersion). Other kinds ignore it.
	APIVersion string
	// BasePath is the path of the provider's base URL, e.g. "/openai" for
	// https://api.groq.com/openai; "" for most providers. Paths are built as
	// BasePath + "/v1/...", as docs/design.md describes base URLs.
	BasePath string
	// ForceNoStore sets "store": false on OpenAI and Azure OpenAI Chat
	// Completions and Responses requests, whatever the client asked: the
	// caller sets it when the tenant's privacy policy forbids storage at the
	// provider.
	ForceNoStore bool
	// DefaultMaxTokens is the max_tokens sent to Anthropic when the client
	// set no limit (Anthropic requires one); 0 means DefaultMaxTokens.
	DefaultMaxTokens int64
	// MaxOutputTokens, when above 0, caps the request's output limit: a
	// client limit above it is lowered to it, and a request without one gets
	// it, in the field each provider reads (docs/translation.md, "Output
	// cap"). Embeddings requests have no output limit and are left alone.
	// 0 means no cap: requests keep the client's limit, byte for byte.
	MaxOutputTokens int64
}

// Defaults for Target fields left empty.
const (
	DefaultAzureAPIVersion  = "2024-10-21"
	DefaultAnthropicVersion = "2023-06-01"
	DefaultMaxTokens        = 4096
)

func (t Target) maxTokens() int64 {
	if t.DefaultMaxTokens > 0 {
		return t.DefaultMaxTokens
	}
	return DefaultMaxTokens
}

// capOutput returns n lowered to MaxOutputTokens when a cap is set.
func (t Target) capOutput(n int64) int64 {
	if t.MaxOutputTokens > 0 && n > t.MaxOutputTokens {
		return t.MaxOutputTokens
	}
	return n
}

// path joins BasePath and p.
func (t Target) path(p string) string {
	return strings.TrimSuffix(t.BasePath, "/") + p
}

// Header is a request header to set.
type Header struct {
	Name, Value string
	// IfAbsent means: keep the client's value if it sent this header. It is
	// set for anthropic-version on Anthropic passthrough, where the client's
	// own version (and anthropic-beta) decide what its body means.
	IfAbsent bool
}

// ProviderRequest is a request ready for the provider.
type ProviderRequest struct {
	Method string // always POST today
	// Path is the provider path with its query, e.g.
	// "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse".
	Path string
	Body []byte
	// Headers are set on the request in addition to the credential headers.
	// The caller also removes content-length, since Body changed.
	Headers []Header
	// Response describes what the client expects back; pass it to
	// NewResponseTranslator.
	Response ResponseOptions
}

// ResponseOptions tell a response translator what the client asked for.
// TranslateRequest fills Stream and IncludeUsage, and keeps the client's
// body for the input estimate; the caller adds RequestID and Created.
type ResponseOptions struct {
	Stream bool // the client asked for a stream
	// IncludeUsage is the client's stream_options.include_usage: whether an
	// OpenAI stream ends with a usage chunk. Tollgate always asks OpenAI
	// providers for it and removes it again when the client did not.
	IncludeUsage bool
	// EstimatedInputTokens, when above 0, is the input count used when the
	// provider reports no usage. TranslateRequest leaves it 0: the response
	// translator then counts the request's text with a tokenizer, and only
	// if the estimate is needed (see usageMeter), since counting a large
	// prompt takes milliseconds.
	EstimatedInputTokens int64
	// RequestID makes ids in translated responses when the provider gives
	// none (Gemini function calls, chat completion ids).
	RequestID string
	// Created is the "created" time (Unix seconds) of translated OpenAI
	// responses whose provider gives none; the caller passes the request's
	// arrival time. 0 is written as 0.
	Created int64

	// request is the client's request, for the input estimate.
	request requestText
}

// pair is the translation between one client API and one provider family.
// Each pair lives in its own file.
type pair interface {
	request(t Target, body []byte) (ProviderRequest, error)
	response(t Target, o ResponseOptions) handler
}

func pairFor(api ClientAPI, kind ProviderKind) (pair, error) {
	switch api {
	case OpenAIChat, OpenAIEmbeddings, OpenAIResponses:
		switch kind.family() {
		case familyOpenAI:
			return openAIPassthrough{api: api}, nil
		case familyAnthropic:
			if api == OpenAIChat {
				return openAIToAnthropic{}, nil
			}
		case familyGemini:
			if api == OpenAIChat {
				return openAIToGemini{}, nil
			}
		}
	case AnthropicMessages:
		switch kind.family() {
		case familyAnthropic:
			return anthropicPassthrough{}, nil
		case familyOpenAI:
			return anthropicToOpenAI{}, nil
		}
	default:
		return nil, &Error{Status: 400, Type: "invalid_request_error", Code: CodeUnsupportedAPI,
			Message: "This endpoint is not served by Tollgate."}
	}
	if kind.family() == familyUnknown {
		return nil, &Error{Status: 500, Type: "server_error", Code: CodeUnsupportedAPI,
			Message: "The model's deployment names an unknown provider kind " + strconv.Quote(string(kind)) + "; an operator must fix it."}
	}
	return nil, badRequest(CodeUnsupportedAPI, "model",
		"This model is served by a %s provider, which cannot answer the %s API. Use /v1/chat/completions for this model, or pick a model served by an OpenAI-kind provider.",
		kind, api)
}

// TranslateRequest converts a client's request body for the target's
// provider. An error is an *Error: answer the client with its Status and
// Body(api).
//
// The returned Response options keep body, to count its tokens if the
// provider reports no usage: body must not change while the response is
// translated.
func TranslateRequest(api ClientAPI, t Target, body []byte) (ProviderRequest, error) {
	p, err := pairFor(api, t.Kind)
	if err != nil {
		return ProviderRequest{}, err
	}
	if t.UpstreamModel == "" {
		return ProviderRequest{}, &Error{Status: 500, Type: "server_error", Code: CodeMissingParameter,
			Message: "The model's deployment has no upstream model name; an operator must fix it."}
	}
	preq, err := p.request(t, body)
	if err != nil {
		return ProviderRequest{}, err
	}
	preq.Response.request = requestText{api: api, body: body}
	return preq, nil
}

// RequestModel returns the top-level "model" of a client's request body
// without decoding the rest, for the policy check that picks a deployment
// before translation. A body with two "model" members is refused: the
// policy check and the provider must not see different models.
func RequestModel(body []byte) (string, error) {
	spans, found, _, err := topLevel(body, "model")
	if err != nil {
		var dup *duplicateKeyError
		if errors.As(err, &dup) {
			return "", scanError(err)
		}
		if err := checkObject(body); err != nil {
			return "", err
		}
		return "", badRequest(CodeInvalidJSON, "", "The request body is not a valid JSON object.")
	}
	if err := checkModel(body, spans[0], found[0]); err != nil {
		return "", err
	}
	var model string
	if err := json.Unmarshal(body[spans[0].start:spans[0].end], &model); err != nil {
		return "", badRequest(CodeInvalidType, "model", "Invalid 'model': expected a JSON string.")
	}
	return model, nil
}

// CredentialHeaders returns the headers that carry the provider credential:
// Authorization: Bearer for OpenAI and compatible servers, x-api-key for
// Anthropic, x-goog-api-key for Gemini, api-key for Azure OpenAI. A keyless
// compatible server (a local vLLM) gets none when credential is empty.
func CredentialHeaders(kind ProviderKind, credential string) []Header {
	if credential == "" {
		return nil
	}
	switch kind {
	case KindAnthropic:
		return []Header{{Name: "x-api-key", Value: credential}}
	case KindGemini:
		return []Header{{Name: "x-goog-api-key", Value: credential}}
	case KindAzureOpenAI:
		return []Header{{Name: "api-key", Value: credential}}
	}
	return []Header{{Name: "authorization", Value: "Bearer " + credential}}
}

// ClientCredentialHeaders lists the request headers that may carry the
// client's Tollgate key. The caller removes them all before setting the
// provider's credential, so that no Tollgate key reaches a provider whose
// credential travels in another header.
func ClientCredentialHeaders() []string {
	return []string{"authorization", "x-api-key", "api-key", "x-goog-api-key"}
}
