package translate

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// The OpenAI Chat Completions model shared by the pairs that translate it
// (openai_anthropic.go, openai_gemini.go, anthropic_openai.go): the request
// as read and checked, and writers for chat.completion bodies and
// chat.completion.chunk events.

type chatRequest struct {
	Model               string             `json:"model"`
	Messages            []chatMessage      `json:"messages"`
	MaxTokens           *int64             `json:"max_tokens"`
	MaxCompletionTokens *int64             `json:"max_completion_tokens"`
	Temperature         *float64           `json:"temperature"`
	TopP                *float64           `json:"top_p"`
	N                   *int64             `json:"n"`
	Stop                stopSequences      `json:"stop"`
	Stream              *bool              `json:"stream"`
	StreamOptions       *chatStreamOptions `json:"stream_options"`
	Tools               []chatTool         `json:"tools"`
	ToolChoice          json.RawMessage    `json:"tool_choice"`
	ParallelToolCalls   *bool              `json:"parallel_tool_calls"`
	ResponseFormat      *chatResponseFmt   `json:"response_format"`
	User                string             `json:"user"`
	Seed                *int64             `json:"seed"`
	PresencePenalty     *float64           `json:"presence_penalty"`
	FrequencyPenalty    *float64           `json:"frequency_penalty"`
	Logprobs            *bool              `json:"logprobs"`
	TopLogprobs         *int64             `json:"top_logprobs"`
	ReasoningEffort     string             `json:"reasoning_effort"`
	Modalities          []string           `json:"modalities"`
	Audio               json.RawMessage    `json:"audio"`
	Functions           json.RawMessage    `json:"functions"`
	FunctionCall        json.RawMessage    `json:"function_call"`
}

type chatStreamOptions struct {
	IncludeUsage *bool `json:"include_usage"`
}

type chatMessage struct {
	Role       string         `json:"role"`
	Content    chatContent    `json:"content"`
	Name       string         `json:"name"`
	ToolCalls  []chatToolCall `json:"tool_calls"`
	ToolCallID string         `json:"tool_call_id"`
	Refusal    *string        `json:"refusal"`
}

// chatContent is a message's content: null, a string, or an array of parts.
type chatContent struct {
	Text  string
	Parts []chatPart
	IsArr bool
	Set   bool // not null
}

func (c *chatContent) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*c = chatContent{}
		return nil
	case len(b) > 0 && b[0] == '"':
		c.Set = true
		return json.Unmarshal(b, &c.Text)
	case len(b) > 0 && b[0] == '[':
		c.Set, c.IsArr = true, true
		if err := json.Unmarshal(b, &c.Parts); err == nil {
			return nil
		}
		// Decode part by part only to say which part is wrong.
		var raws []json.RawMessage
		if err := json.Unmarshal(b, &raws); err != nil {
			return err
		}
		for i, r := range raws {
			var p chatPart
			if err := json.Unmarshal(r, &p); err != nil {
				return &fieldError{field: "content[" + strconv.Itoa(i) + "]", err: err}
			}
		}
		return nil
	}
	return &fieldError{field: "content", msg: "expected a string or an array of content parts, got " + jsonKind(b)}
}

// text returns the content's text when it has only text parts.
func (c *chatContent) text() (string, bool) {
	if !c.IsArr {
		return c.Text, true
	}
	var sb strings.Builder
	for _, p := range c.Parts {
		if p.Type != "text" {
			return "", false
		}
		sb.WriteString(p.Text)
	}
	return sb.String(), true
}

type chatPart struct {
	Type         string          `json:"type"`
	Text         string          `json:"text"`
	ImageURL     *chatImageURL   `json:"image_url"`
	InputAudio   *chatInputAudio `json:"input_audio"`
	File         *chatFile       `json:"file"`
	Refusal      string          `json:"refusal"`
	CacheControl json.RawMessage `json:"cache_control"`
}

type chatImageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail"`
}

// UnmarshalJSON also takes the bare string some older clients send.
func (u *chatImageURL) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &u.URL)
	}
	type plain chatImageURL
	return json.Unmarshal(b, (*plain)(u))
}

type chatInputAudio struct {
	Data   string `json:"data"`
	Format string `json:"format"`
}

type chatFile struct {
	FileData string `json:"file_data"`
	FileID   string `json:"file_id"`
	Filename string `json:"filename"`
}

type chatToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
	// ExtraContent carries provider data through an OpenAI client, as
	// Gemini's own OpenAI endpoint does: extra_content.google.thought_signature.
	ExtraContent *struct {
		Google *struct {
			ThoughtSignature string `json:"thought_signature"`
		} `json:"google"`
	} `json:"extra_content"`
}

type chatTool struct {
	Type     string `json:"type"`
	Function *struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
	} `json:"function"`
}

type chatResponseFmt struct {
	Type       string `json:"type"`
	JSONSchema *struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Schema      json.RawMessage `json:"schema"`
		Strict      *bool           `json:"strict"`
	} `json:"json_schema"`
}

// stopSequences is "stop": a string or an array of strings.
type stopSequences []string

func (s *stopSequences) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*s = nil
		return nil
	case len(b) > 0 && b[0] == '"':
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = stopSequences{one}
		return nil
	case len(b) > 0 && b[0] == '[':
		var many []string
		if err := json.Unmarshal(b, &many); err != nil {
			return &fieldError{field: "stop", msg: "expected a string or an array of strings"}
		}
		*s = many
		return nil
	}
	return &fieldError{field: "stop", msg: "expected a string or an array of strings, got " + jsonKind(b)}
}

// fieldError is a type error found by a custom decoder, relative to the
// value being decoded.
type fieldError struct {
	field string
	msg   string
	err   error
}

func (e *fieldError) Error() string {
	if e.err != nil {
		return e.field + ": " + e.err.Error()
	}
	return e.field + ": " + e.msg
}

// decodeError makes an *Error of a decoding error inside the value at param
// ("" for the top level, "messages[2]" for a message).
func decodeError(param string, err error) *Error {
	join := func(a, b string) string {
		switch {
		case a == "":
			return b
		case b == "":
			return a
		case strings.HasPrefix(b, "["):
			return a + b
		}
		return a + "." + b
	}
	var fe *fieldError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &fe):
		p := join(param, fe.field)
		if fe.err != nil {
			return decodeError(p, fe.err)
		}
		return badRequest(CodeInvalidType, p, "Invalid value for '%s': %s.", p, fe.msg)
	case errors.As(err, &te) && te.Field != "":
		p := join(param, te.Field)
		return badRequest(CodeInvalidType, p, "Invalid type for '%s': expected %s, got %s.", p, jsonTypeName(te.Type.Kind().String()), te.Value)
	case errors.As(err, &te):
		return badRequest(CodeInvalidType, param, "Invalid type for '%s': expected %s, got %s.", param, jsonTypeName(te.Type.Kind().String()), te.Value)
	}
	return jsonError(err)
}

// parseChat reads and checks an OpenAI Chat Completions request: everything a
// client can get wrong in a way that matters to translation is an *Error
// naming the parameter. Unknown members are ignored (see docs/translation.md
// for the ones each provider drops).
func parseChat(body []byte) (*chatRequest, error) {
	if _, _, _, err := topLevel(body, "model", "messages", "stream"); err != nil {
		var dup *duplicateKeyError
		if errors.As(err, &dup) {
			return nil, scanError(err)
		}
		if err := checkObject(body); err != nil {
			return nil, err
		}
		return nil, scanError(err)
	}
	var r chatRequest
	// One decoding pass over the body (encoding/json validates every input
	// it is given, so nested Unmarshal calls would scan the messages again);
	// only a failure is decoded again, message by message, to name the
	// message at fault.
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, locateChatError(body, err)
	}
	if r.Model == "" {
		return nil, badRequest(CodeMissingParameter, "model", "You must provide a model parameter.")
	}
	if len(r.Messages) == 0 {
		return nil, badRequest(CodeMissingParameter, "messages", "'messages' must be a non-empty array of messages.")
	}
	if len(r.Functions) > 0 && string(r.Functions) != "null" || len(r.FunctionCall) > 0 && string(r.FunctionCall) != "null" {
		return nil, badRequest(CodeUnsupportedParameter, "functions", "'functions' and 'function_call' are deprecated and not translated for this model; send 'tools' and 'tool_choice' instead.")
	}
	for i := range r.Messages {
		m := &r.Messages[i]
		if err := checkChatMessage("messages["+strconv.Itoa(i)+"]", m); err != nil {
			return nil, err
		}
	}
	for i, t := range r.Tools {
		param := "tools[" + strconv.Itoa(i) + "]"
		if t.Type != "function" {
			return nil, badRequest(CodeUnsupportedParameter, param+".type", "Tool type %q is not supported for this model; only \"function\" tools are translated.", t.Type)
		}
		if t.Function == nil || t.Function.Name == "" {
			return nil, badRequest(CodeMissingParameter, param+".function.name", "Each tool needs 'function.name'.")
		}
		if p := bytes.TrimSpace(t.Function.Parameters); len(p) > 0 && p[0] != '{' && string(p) != "null" {
			return nil, badRequest(CodeInvalidType, param+".function.parameters", "Invalid type for '%s.function.parameters': expected a JSON Schema object, got %s.", param, jsonKind(p))
		}
	}
	switch {
	case r.N != nil && *r.N < 1:
		return nil, badRequest(CodeInvalidValue, "n", "'n' must be at least 1.")
	case r.Temperature != nil && (*r.Temperature < 0 || *r.Temperature > 2):
		return nil, badRequest(CodeInvalidValue, "temperature", "'temperature' must be between 0 and 2.")
	case r.TopP != nil && (*r.TopP < 0 || *r.TopP > 1):
		return nil, badRequest(CodeInvalidValue, "top_p", "'top_p' must be between 0 and 1.")
	case r.MaxTokens != nil && *r.MaxTokens < 1:
		return nil, badRequest(CodeInvalidValue, "max_tokens", "'max_tokens' must be at least 1.")
	case r.MaxCompletionTokens != nil && *r.MaxCompletionTokens < 1:
		return nil, badRequest(CodeInvalidValue, "max_completion_tokens", "'max_completion_tokens' must be at least 1.")
	}
	if rf := r.ResponseFormat; rf != nil {
		switch rf.Type {
		case "text", "json_object":
		case "json_schema":
			if rf.JSONSchema == nil || len(bytes.TrimSpace(rf.JSONSchema.Schema)) == 0 || bytes.TrimSpace(rf.JSONSchema.Schema)[0] != '{' {
				return nil, badRequest(CodeMissingParameter, "response_format.json_schema.schema", "A 'json_schema' response format needs 'json_schema.schema', a JSON Schema object.")
			}
		default:
			return nil, badRequest(CodeInvalidValue, "response_format.type", "Unknown 'response_format.type' %q; use \"text\", \"json_object\" or \"json_schema\".", rf.Type)
		}
	}
	return &r, nil
}

// locateChatError names the message a decoding error is in.
func locateChatError(body []byte, err error) error {
	var shape struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if json.Unmarshal(body, &shape) == nil {
		for i, raw := range shape.Messages {
			var m chatMessage
			if e := json.Unmarshal(raw, &m); e != nil {
				return decodeError("messages["+strconv.Itoa(i)+"]", e)
			}
		}
	}
	return decodeError("", err)
}

// checkChatMessage checks one message's role and the content its role allows.
func checkChatMessage(param string, m *chatMessage) error {
	switch m.Role {
	case "system", "developer":
		if _, ok := m.Content.text(); !ok {
			return badRequest(CodeUnsupportedContent, param+".content", "A %s message may hold only text parts.", m.Role)
		}
		if !m.Content.Set {
			return badRequest(CodeMissingParameter, param+".content", "A %s message needs 'content'.", m.Role)
		}
	case "user":
		if !m.Content.Set {
			return badRequest(CodeMissingParameter, param+".content", "A user message needs 'content'.")
		}
		for j, p := range m.Content.Parts {
			pp := param + ".content[" + strconv.Itoa(j) + "]"
			switch p.Type {
			case "text":
			case "image_url":
				if p.ImageURL == nil || p.ImageURL.URL == "" {
					return badRequest(CodeMissingParameter, pp+".image_url.url", "An image_url part needs 'image_url.url': an https URL or a data: URL.")
				}
			case "input_audio":
				if p.InputAudio == nil || p.InputAudio.Data == "" {
					return badRequest(CodeMissingParameter, pp+".input_audio.data", "An input_audio part needs 'input_audio.data' (base64).")
				}
			case "file":
				if p.File == nil || (p.File.FileData == "" && p.File.FileID == "") {
					return badRequest(CodeMissingParameter, pp+".file.file_data", "A file part needs 'file.file_data' (a data: URL).")
				}
			case "":
				return badRequest(CodeMissingParameter, pp+".type", "Each content part needs a 'type'.")
			default:
				return badRequest(CodeUnsupportedContent, pp+".type", "Content part type %q is not supported; use text, image_url, input_audio or file.", p.Type)
			}
		}
	case "assistant":
		for j, p := range m.Content.Parts {
			if p.Type != "text" && p.Type != "refusal" {
				return badRequest(CodeUnsupportedContent, param+".content["+strconv.Itoa(j)+"].type", "An assistant message may hold only text and refusal parts, not %q.", p.Type)
			}
		}
		for j, tc := range m.ToolCalls {
			tp := param + ".tool_calls[" + strconv.Itoa(j) + "]"
			if tc.Type != "" && tc.Type != "function" {
				return badRequest(CodeUnsupportedParameter, tp+".type", "Tool call type %q is not supported; only \"function\".", tc.Type)
			}
			if tc.Function.Name == "" {
				return badRequest(CodeMissingParameter, tp+".function.name", "Each tool call needs 'function.name'.")
			}
			if tc.ID == "" {
				return badRequest(CodeMissingParameter, tp+".id", "Each tool call needs an 'id', which the matching tool message names in 'tool_call_id'.")
			}
		}
	case "tool":
		if m.ToolCallID == "" {
			return badRequest(CodeMissingParameter, param+".tool_call_id", "A tool message needs 'tool_call_id', the id of the tool call it answers.")
		}
		for j, p := range m.Content.Parts {
			if p.Type != "text" && p.Type != "image_url" {
				return badRequest(CodeUnsupportedContent, param+".content["+strconv.Itoa(j)+"].type", "A tool message may hold only text and image parts, not %q.", p.Type)
			}
		}
	case "function":
		return badRequest(CodeUnsupportedParameter, param+".role", "The 'function' role is deprecated and not translated for this model; use 'tool' messages.")
	case "":
		return badRequest(CodeMissingParameter, param+".role", "Each message needs a 'role'.")
	default:
		return badRequest(CodeInvalidValue, param+".role", "Unknown role %q; use system, developer, user, assistant or tool.", m.Role)
	}
	return nil
}

// maxOutputTokens is the client's output limit: max_completion_tokens, or the
// older max_tokens.
func (r *chatRequest) maxOutputTokens() (int64, bool) {
	switch {
	case r.MaxCompletionTokens != nil:
		return *r.MaxCompletionTokens, true
	case r.MaxTokens != nil:
		return *r.MaxTokens, true
	}
	return 0, false
}

func (r *chatRequest) stream() bool { return r.Stream != nil && *r.Stream }

func (r *chatRequest) includeUsage() bool {
	return r.StreamOptions != nil && r.StreamOptions.IncludeUsage != nil && *r.StreamOptions.IncludeUsage
}

// chatToolChoice is tool_choice after reading: mode is none, auto,
// required, or function (then name is set).
type chatToolChoice struct {
	mode string
	name string
}

func (r *chatRequest) toolChoice() (*chatToolChoice, error) {
	b := bytes.TrimSpace(r.ToolChoice)
	if len(b) == 0 || string(b) == "null" {
		return nil, nil
	}
	if b[0] == '"' {
		var s string
		_ = json.Unmarshal(b, &s)
		switch s {
		case "none", "auto", "required":
			return &chatToolChoice{mode: s}, nil
		}
		return nil, badRequest(CodeInvalidValue, "tool_choice", "Unknown 'tool_choice' %q; use \"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}}.", s)
	}
	var obj struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, decodeError("tool_choice", err)
	}
	if obj.Type != "function" || obj.Function.Name == "" {
		return nil, badRequest(CodeUnsupportedParameter, "tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}} for this model.")
	}
	return &chatToolChoice{mode: "function", name: obj.Function.Name}, nil
}

// parseDataURL splits "data:image/png;base64,AAAA" into its media type and
// base64 payload.
func parseDataURL(u string) (mediaType, data string, ok bool) {
	rest, found := strings.CutPrefix(u, "data:")
	if !found {
		return "", "", false
	}
	meta, data, found := strings.Cut(rest, ",")
	if !found {
		return "", "", false
	}
	mediaType, params, _ := strings.Cut(meta, ";")
	if !strings.Contains(";"+params+";", ";base64;") {
		return "", "", false
	}
	return mediaType, data, true
}

// chatCompletion is a non-stream Chat Completions response.
type chatCompletion struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	Choices           []chatChoice    `json:"choices"`
	Usage             json.RawMessage `json:"usage,omitempty"`
	SystemFingerprint *string         `json:"system_fingerprint"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      chatOutMessage  `json:"message"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type chatOutMessage struct {
	Role             string            `json:"role"`
	Content          *string           `json:"content"`
	Refusal          *string           `json:"refusal"`
	ReasoningContent string            `json:"reasoning_content,omitempty"`
	ToolCalls        []chatOutToolCall `json:"tool_calls,omitempty"`
}

type chatOutToolCall struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	Function     chatOutFunction `json:"function"`
	ExtraContent json.RawMessage `json:"extra_content,omitempty"`
}

type chatOutFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

var jsonNull = json.RawMessage("null")

// chunkWriter writes chat.completion.chunk events. Every chunk of a stream
// shares id, created and model; its choices array holds one choice.
type chunkWriter struct {
	head         []byte // `data: {"id":...,"model":...,"choices":[`
	includeUsage bool   // chunks carry "usage":null, as OpenAI's do when usage was asked for
}

func newChunkWriter(id, model string, created int64, includeUsage bool) chunkWriter {
	h := make([]byte, 0, 96+len(id)+len(model))
	h = append(h, `data: {"id":`...)
	h = appendJSONString(h, id)
	h = append(h, `,"object":"chat.completion.chunk","created":`...)
	h = appendInt(h, created)
	h = append(h, `,"model":`...)
	h = appendJSONString(h, model)
	h = append(h, `,"choices":[`...)
	return chunkWriter{head: h, includeUsage: includeUsage}
}

// open starts a chunk for choice index; the caller appends delta members.
func (w *chunkWriter) open(dst []byte, index int) []byte {
	dst = append(dst, w.head...)
	dst = append(dst, `{"index":`...)
	dst = appendInt(dst, int64(index))
	return append(dst, `,"delta":{`...)
}

// close ends a chunk begun with open; finish is "" for null.
func (w *chunkWriter) close(dst []byte, finish string) []byte {
	dst = append(dst, `},"logprobs":null,"finish_reason":`...)
	dst = appendStringOrNull(dst, finish)
	dst = append(dst, "}]"...)
	if w.includeUsage {
		dst = append(dst, `,"usage":null`...)
	}
	return append(dst, "}\n\n"...)
}

func (w *chunkWriter) role(dst []byte, index int) []byte {
	dst = w.open(dst, index)
	dst = append(dst, `"role":"assistant","content":""`...)
	return w.close(dst, "")
}

// text writes a delta with one string member: content, reasoning_content or
// refusal.
func (w *chunkWriter) text(dst []byte, index int, member, s string) []byte {
	dst = w.open(dst, index)
	dst = append(dst, '"')
	dst = append(dst, member...)
	dst = append(dst, '"', ':')
	dst = appendJSONString(dst, s)
	return w.close(dst, "")
}

// toolStart writes the first delta of a tool call: its id and name.
func (w *chunkWriter) toolStart(dst []byte, index, tool int, id, name, args string, extra []byte) []byte {
	dst = w.open(dst, index)
	dst = append(dst, `"tool_calls":[{"index":`...)
	dst = appendInt(dst, int64(tool))
	dst = append(dst, `,"id":`...)
	dst = appendJSONString(dst, id)
	dst = append(dst, `,"type":"function","function":{"name":`...)
	dst = appendJSONString(dst, name)
	dst = append(dst, `,"arguments":`...)
	dst = appendJSONString(dst, args)
	dst = append(dst, '}')
	if len(extra) > 0 {
		dst = append(dst, `,"extra_content":`...)
		dst = append(dst, extra...)
	}
	dst = append(dst, "}]"...)
	return w.close(dst, "")
}

// toolArgs writes a piece of a tool call's arguments.
func (w *chunkWriter) toolArgs(dst []byte, index, tool int, args string) []byte {
	dst = w.open(dst, index)
	dst = append(dst, `"tool_calls":[{"index":`...)
	dst = appendInt(dst, int64(tool))
	dst = append(dst, `,"function":{"arguments":`...)
	dst = appendJSONString(dst, args)
	dst = append(dst, "}}]"...)
	return w.close(dst, "")
}

func (w *chunkWriter) finish(dst []byte, index int, reason string) []byte {
	return w.close(w.open(dst, index), reason)
}

// usage writes the final usage chunk, whose choices array is empty.
func (w *chunkWriter) usage(dst []byte, u Usage) []byte {
	dst = append(dst, w.head...)
	dst = append(dst, `],"usage":`...)
	dst = appendOpenAIUsage(dst, u)
	return append(dst, "}\n\n"...)
}

// errorEvent writes an error the way OpenAI reports one mid-stream: a data
// line holding an error object. status picks the OpenAI error type; code
// keeps the provider's own error type.
func (w *chunkWriter) errorEvent(dst []byte, status int, message, code string) []byte {
	dst = append(dst, "data: "...)
	dst = append(dst, openAIErrorBody(openAIErrorType(status), message, "", code)...)
	return append(dst, "\n\n"...)
}

const sseDone = "data: [DONE]\n\n"

// responseID picks the id of a translated response: the provider's, else one
// made from the caller's request id.
func responseID(provider, requestID string) string {
	switch {
	case provider != "":
		return provider
	case requestID != "":
		return "chatcmpl-" + requestID
	}
	return "chatcmpl-tollgate"
}
