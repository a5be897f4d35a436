package translate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Error is a request that Tollgate refuses before it reaches a provider: the
// client sent something invalid, or something the deployment's provider
// cannot do. The caller answers with Status and Body(api).
type Error struct {
	Status  int    // HTTP status; 400 for every bad input
	Type    string // OpenAI error type: "invalid_request_error"
	Param   string // the offending parameter, e.g. "messages[2].content[0].type"; may be empty
	Code    string // one of the Code* constants
	Message string // what is wrong and what to send instead
}

// Codes of Error. They tell a program what kind of fix a request needs.
const (
	CodeInvalidJSON          = "invalid_json"               // the body is not a JSON object
	CodeMissingParameter     = "missing_required_parameter" // a required field is absent or empty
	CodeInvalidType          = "invalid_type"               // a field has the wrong JSON type
	CodeInvalidValue         = "invalid_value"              // a field has a value outside its range
	CodeUnsupportedParameter = "unsupported_parameter"      // valid for the API, not for this provider
	CodeUnsupportedContent   = "unsupported_content"        // a content part this provider cannot take
	CodeUnsupportedAPI       = "unsupported_api"            // this endpoint cannot be served by this provider
)

func (e *Error) Error() string {
	if e.Param != "" {
		return e.Param + ": " + e.Message
	}
	return e.Message
}

// Body renders the error in the error shape of the client's API.
func (e *Error) Body(api ClientAPI) []byte {
	if api == AnthropicMessages {
		msg := e.Message
		if e.Param != "" {
			msg = e.Param + ": " + msg
		}
		return anthropicErrorBody(anthropicErrorType(e.Status), msg)
	}
	return openAIErrorBody(e.Type, e.Message, e.Param, e.Code)
}

func badRequest(code, param, format string, args ...any) *Error {
	return &Error{
		Status:  400,
		Type:    "invalid_request_error",
		Param:   param,
		Code:    code,
		Message: fmt.Sprintf(format, args...),
	}
}

// jsonError turns an encoding/json error from decoding a client's body into
// an Error that names the field and the expected type.
func jsonError(err error) *Error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return badRequest(CodeInvalidJSON, "", "The request body is not valid JSON (%s at byte %d). Send a JSON object.", syn.Error(), syn.Offset)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return badRequest(CodeInvalidJSON, "", "The request body must be a JSON object, not a JSON %s.", typ.Value)
		}
		return badRequest(CodeInvalidType, field, "Invalid type for '%s': expected %s, got %s.", field, jsonTypeName(typ.Type.Kind().String()), typ.Value)
	case err != nil && strings.Contains(err.Error(), "unexpected end of JSON input"):
		return badRequest(CodeInvalidJSON, "", "The request body is not valid JSON (it ends too early). Send a JSON object.")
	default:
		var e *Error
		if errors.As(err, &e) {
			return e
		}
		return badRequest(CodeInvalidJSON, "", "The request body could not be read: %v.", err)
	}
}

func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "ptr":
		return "a value of another type"
	}
	return kind
}

// TranslateError converts an error response of a provider into the error
// shape of the client's API, keeping the message and choosing the error type
// from the HTTP status (which the caller keeps). A body that is already in
// the client's shape is returned unchanged; a body that is not JSON at all
// (a proxy's HTML page) becomes the message, shortened.
func TranslateError(api ClientAPI, kind ProviderKind, status int, body []byte) []byte {
	pe := parseProviderError(body)
	if pe.shape == shapeOpenAI && api != AnthropicMessages && kind.family() == familyOpenAI ||
		pe.shape == shapeAnthropic && api == AnthropicMessages && kind == KindAnthropic {
		return body
	}
	if pe.message == "" {
		pe.message = fmt.Sprintf("The provider answered with HTTP status %d and no error message.", status)
	}
	if api == AnthropicMessages {
		return anthropicErrorBody(anthropicErrorType(status), pe.message)
	}
	code := pe.code
	if code == "" {
		code = pe.typ
	}
	return openAIErrorBody(openAIErrorType(status), pe.message, pe.param, code)
}

type errorShape int

const (
	shapeUnknown errorShape = iota
	shapeOpenAI
	shapeAnthropic
	shapeGemini
)

type providerError struct {
	shape   errorShape
	typ     string
	message string
	param   string
	code    string
}

// parseProviderError reads the error bodies of OpenAI ({"error":{"message",
// "type","param","code"}}), Anthropic ({"type":"error","error":{"type",
// "message"}}), Gemini ({"error":{"code":400,"message","status"}}, also
// wrapped in an array by streaming endpoints) and the looser shapes of
// OpenAI-compatible servers ({"error":"text"}, {"message":"text"},
// {"detail":"text"}).
func parseProviderError(body []byte) providerError {
	b := bytes.TrimSpace(body)
	if len(b) > 0 && b[0] == '[' {
		var arr []json.RawMessage
		if json.Unmarshal(b, &arr) == nil && len(arr) > 0 {
			b = arr[0]
		}
	}
	var env struct {
		Type    string          `json:"type"`
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return providerError{message: shortText(body)}
	}
	var pe providerError
	if len(env.Error) > 0 && env.Error[0] == '{' {
		var inner struct {
			Type    string          `json:"type"`
			Message string          `json:"message"`
			Param   *string         `json:"param"`
			Code    json.RawMessage `json:"code"`
			Status  string          `json:"status"`
		}
		if json.Unmarshal(env.Error, &inner) == nil {
			pe.typ, pe.message = inner.Type, inner.Message
			if inner.Param != nil {
				pe.param = *inner.Param
			}
			switch {
			case env.Type == "error":
				pe.shape = shapeAnthropic
			case inner.Status != "":
				pe.shape, pe.code = shapeGemini, inner.Status
			default:
				pe.shape = shapeOpenAI
				var s string
				if json.Unmarshal(inner.Code, &s) == nil {
					pe.code = s
				} else if len(inner.Code) > 0 && string(inner.Code) != "null" {
					pe.code = string(inner.Code)
				}
			}
			return pe
		}
	}
	var s string
	switch {
	case len(env.Error) > 0 && json.Unmarshal(env.Error, &s) == nil:
		pe.message = s
	case env.Message != "":
		pe.message = env.Message
	case len(env.Detail) > 0:
		if json.Unmarshal(env.Detail, &s) == nil {
			pe.message = s
		} else {
			pe.message = shortText(env.Detail)
		}
	default:
		pe.message = shortText(body)
	}
	return pe
}

// shortText makes a message of a non-JSON body: its first 512 bytes, cut at a
// character boundary.
func shortText(b []byte) string {
	b = bytes.TrimSpace(b)
	const maxLen = 512
	if len(b) > maxLen {
		b = b[:maxLen]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func openAIErrorType(status int) string {
	switch {
	case status == 401:
		return "authentication_error"
	case status == 403:
		return "permission_error"
	case status == 404:
		return "not_found_error"
	case status == 429:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

func anthropicErrorType(status int) string {
	switch status {
	case 401:
		return "authentication_error"
	case 402:
		return "billing_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 504:
		return "timeout_error"
	case 503, 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// anthropicErrorStatus is the HTTP status Anthropic uses for an error type,
// for errors that arrive inside a stream, without a status of their own.
func anthropicErrorStatus(typ string) int {
	switch typ {
	case "invalid_request_error":
		return 400
	case "authentication_error":
		return 401
	case "billing_error":
		return 402
	case "permission_error":
		return 403
	case "not_found_error":
		return 404
	case "request_too_large":
		return 413
	case "rate_limit_error":
		return 429
	case "timeout_error":
		return 504
	case "overloaded_error":
		return 529
	}
	return 500
}

func openAIErrorBody(typ, message, param, code string) []byte {
	b := make([]byte, 0, 64+len(message))
	b = append(b, `{"error":{"message":`...)
	b = appendJSONString(b, message)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, typ)
	b = append(b, `,"param":`...)
	b = appendStringOrNull(b, param)
	b = append(b, `,"code":`...)
	b = appendStringOrNull(b, code)
	return append(b, "}}"...)
}

func anthropicErrorBody(typ, message string) []byte {
	b := make([]byte, 0, 64+len(message))
	b = append(b, `{"type":"error","error":{"type":`...)
	b = appendJSONString(b, typ)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, message)
	return append(b, "}}"...)
}

func appendStringOrNull(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendJSONString(b, s)
}

// StreamError is returned by ResponseTranslator.Chunk when the provider
// reported an error inside a stream whose HTTP status was already 200 (an
// Anthropic "error" event, an OpenAI or Gemini error chunk). The bytes
// returned with it carry the error in the client's stream format: forward
// them, then end the stream and record the request as failed.
type StreamError struct {
	Type    string // the provider's error type, e.g. "overloaded_error"
	Message string
}

func (e *StreamError) Error() string {
	return "provider stream error: " + e.Type + ": " + e.Message
}

// ProviderResponseError is returned by ResponseTranslator.Chunk when a
// successful (2xx) provider response cannot be read: malformed JSON, or an
// event that breaks the provider's protocol. The client should see a 502.
type ProviderResponseError struct {
	Provider ProviderKind
	Err      error
}

func (e *ProviderResponseError) Error() string {
	return "unreadable " + string(e.Provider) + " response: " + e.Err.Error()
}

func (e *ProviderResponseError) Unwrap() error { return e.Err }
