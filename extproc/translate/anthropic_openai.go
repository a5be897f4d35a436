package translate

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// anthropicToOpenAI serves Anthropic Messages clients (Claude Code, the
// Anthropic SDKs) from OpenAI, Azure OpenAI and OpenAI-compatible providers.
// docs/translation.md has the field-by-field table.
type anthropicToOpenAI struct{}

// openAIChatOut is the Chat Completions request built from a Messages
// request.
type openAIChatOut struct {
	Model               string             `json:"model"`
	Messages            []openAIMessageOut `json:"messages"`
	MaxCompletionTokens *int64             `json:"max_completion_tokens,omitempty"`
	MaxTokens           *int64             `json:"max_tokens,omitempty"`
	Stop                []string           `json:"stop,omitempty"`
	Temperature         *float64           `json:"temperature,omitempty"`
	TopP                *float64           `json:"top_p,omitempty"`
	Stream              bool               `json:"stream,omitempty"`
	StreamOptions       *chatStreamOptions `json:"stream_options,omitempty"`
	Tools               []openAIToolOut    `json:"tools,omitempty"`
	ToolChoice          any                `json:"tool_choice,omitempty"`
	ParallelToolCalls   *bool              `json:"parallel_tool_calls,omitempty"`
	ResponseFormat      any                `json:"response_format,omitempty"`
	User                string             `json:"user,omitempty"`
	Store               *bool              `json:"store,omitempty"`
}

type openAIMessageOut struct {
	Role       string            `json:"role"`
	Content    any               `json:"content"`
	ToolCalls  []chatOutToolCall `json:"tool_calls,omitempty"`
	ToolCallID string            `json:"tool_call_id,omitempty"`
}

type openAIPartOut struct {
	Type     string         `json:"type"`
	Text     string         `json:"text,omitempty"`
	ImageURL *openAIURLOut  `json:"image_url,omitempty"`
	File     *openAIFileOut `json:"file,omitempty"`
}

type openAIURLOut struct {
	URL string `json:"url"`
}

type openAIFileOut struct {
	Filename string `json:"filename,omitempty"`
	FileData string `json:"file_data"`
}

type openAIToolOut struct {
	Type     string            `json:"type"`
	Function openAIFunctionOut `json:"function"`
}

type openAIFunctionOut struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

// anthropicIn is a Messages request as read from a client.
type anthropicIn struct {
	anthropicRequest
	MaxTokens  *int64          `json:"max_tokens"`
	Messages   json.RawMessage `json:"messages"`
	ToolChoice json.RawMessage `json:"tool_choice"`
}

func (anthropicToOpenAI) request(t Target, body []byte) (ProviderRequest, error) {
	if err := checkObject(body); err != nil {
		return ProviderRequest{}, err
	}
	if _, _, _, err := topLevel(body, "model", "messages", "stream", "max_tokens"); err != nil {
		return ProviderRequest{}, scanError(err)
	}
	var in anthropicIn
	if err := json.Unmarshal(body, &in); err != nil {
		return ProviderRequest{}, decodeError("", err)
	}
	if in.Model == "" {
		return ProviderRequest{}, badRequest(CodeMissingParameter, "model", "You must provide a model parameter.")
	}
	if in.MaxTokens == nil || *in.MaxTokens < 1 {
		return ProviderRequest{}, badRequest(CodeMissingParameter, "max_tokens", "'max_tokens' is required and must be at least 1.")
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(in.Messages, &raws); err != nil || len(raws) == 0 {
		if err != nil && len(in.Messages) > 0 {
			return ProviderRequest{}, badRequest(CodeInvalidType, "messages", "'messages' must be an array of messages.")
		}
		return ProviderRequest{}, badRequest(CodeMissingParameter, "messages", "'messages' must be a non-empty array of messages.")
	}

	out := openAIChatOut{Model: t.UpstreamModel, Stream: in.Stream, Stop: in.StopSequences, Temperature: in.Temperature, TopP: in.TopP}
	if in.System != nil {
		var sb strings.Builder
		for i, b := range *in.System {
			if b.Type != "text" {
				return ProviderRequest{}, badRequest(CodeUnsupportedContent, "system["+strconv.Itoa(i)+"].type", "The system prompt may hold only text blocks.")
			}
			if sb.Len() > 0 {
				sb.WriteString("\n\n")
			}
			sb.WriteString(b.Text)
		}
		if sb.Len() > 0 {
			out.Messages = append(out.Messages, openAIMessageOut{Role: "system", Content: sb.String()})
		}
	}
	for i, raw := range raws {
		param := "messages." + strconv.Itoa(i)
		var m anthropicMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return ProviderRequest{}, decodeError(param, err)
		}
		msgs, err := openAIMessages(param, &m)
		if err != nil {
			return ProviderRequest{}, err
		}
		out.Messages = append(out.Messages, msgs...)
	}

	limit := t.capOutput(*in.MaxTokens)
	if t.Kind == KindOpenAICompatible {
		out.MaxTokens = &limit
	} else {
		// OpenAI's reasoning models refuse max_tokens.
		out.MaxCompletionTokens = &limit
	}
	if out.Stream {
		out.StreamOptions = &chatStreamOptions{IncludeUsage: boolPtr(true)}
	}
	for i, tool := range in.Tools {
		if tool.Type != "" && tool.Type != "custom" {
			return ProviderRequest{}, badRequest(CodeUnsupportedParameter, "tools."+strconv.Itoa(i)+".type",
				"Server tool %q runs at Anthropic and is not available for this model (served by an OpenAI-style provider); define it as a custom tool.", tool.Type)
		}
		if tool.Name == "" {
			return ProviderRequest{}, badRequest(CodeMissingParameter, "tools."+strconv.Itoa(i)+".name", "Each tool needs a 'name'.")
		}
		out.Tools = append(out.Tools, openAIToolOut{Type: "function", Function: openAIFunctionOut{Name: tool.Name, Description: tool.Description, Parameters: tool.InputSchema}})
	}
	if tc := bytes.TrimSpace(in.ToolChoice); len(tc) > 0 && string(tc) != "null" {
		var choice anthropicToolChoice
		if err := json.Unmarshal(tc, &choice); err != nil {
			return ProviderRequest{}, decodeError("tool_choice", err)
		}
		switch choice.Type {
		case "auto":
			out.ToolChoice = "auto"
		case "any":
			out.ToolChoice = "required"
		case "none":
			out.ToolChoice = "none"
		case "tool":
			if choice.Name == "" {
				return ProviderRequest{}, badRequest(CodeMissingParameter, "tool_choice.name", "A tool_choice of type \"tool\" needs the tool's 'name'.")
			}
			out.ToolChoice = map[string]any{"type": "function", "function": map[string]string{"name": choice.Name}}
		default:
			return ProviderRequest{}, badRequest(CodeInvalidValue, "tool_choice.type", "Unknown tool_choice type %q; use auto, any, tool or none.", choice.Type)
		}
		if choice.DisableParallelToolUse && len(out.Tools) > 0 {
			out.ParallelToolCalls = boolPtr(false)
		}
	}
	if in.Metadata != nil {
		out.User = in.Metadata.UserID
	}
	if oc := in.OutputConfig; oc != nil && oc.Format != nil && oc.Format.Type == "json_schema" {
		out.ResponseFormat = map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "response", "strict": true, "schema": oc.Format.Schema}}
	}
	if t.ForceNoStore && (t.Kind == KindOpenAI || t.Kind == KindAzureOpenAI) {
		out.Store = boolPtr(false)
	}
	b, err := marshal(&out)
	if err != nil {
		return ProviderRequest{}, err
	}
	return ProviderRequest{
		Method:   "POST",
		Path:     openAIPath(t, OpenAIChat),
		Body:     b,
		Response: ResponseOptions{Stream: out.Stream},
	}, nil
}

func boolPtr(b bool) *bool { return &b }

// openAIMessages converts one Messages turn. A user turn with tool results
// becomes tool messages (which OpenAI wants right after the assistant's
// tool calls) followed by a user message with the rest; images inside tool
// results move to that user message, since OpenAI tool messages hold text
// only.
func openAIMessages(param string, m *anthropicMessage) ([]openAIMessageOut, error) {
	switch m.Role {
	case "user", "assistant":
	case "":
		return nil, badRequest(CodeMissingParameter, param+".role", "Each message needs a 'role'.")
	default:
		return nil, badRequest(CodeInvalidValue, param+".role", "Unknown role %q; use user or assistant (the system prompt goes in 'system').", m.Role)
	}
	var out []openAIMessageOut
	var parts []openAIPartOut
	var calls []chatOutToolCall
	for j, b := range m.Content {
		bp := param + ".content." + strconv.Itoa(j)
		switch b.Type {
		case "text":
			if b.Text != "" {
				parts = append(parts, openAIPartOut{Type: "text", Text: b.Text})
			}
		case "image", "document":
			if m.Role != "user" {
				return nil, badRequest(CodeUnsupportedContent, bp+".type", "An assistant turn cannot hold %s blocks.", b.Type)
			}
			p, err := openAIPartFromSource(bp, &b)
			if err != nil {
				return nil, err
			}
			parts = append(parts, p)
		case "tool_use":
			if m.Role != "assistant" {
				return nil, badRequest(CodeUnsupportedContent, bp+".type", "tool_use blocks belong in assistant turns.")
			}
			if b.ID == "" || b.Name == "" {
				return nil, badRequest(CodeMissingParameter, bp+".id", "A tool_use block needs 'id' and 'name'.")
			}
			args := compactArgs(b.Input)
			calls = append(calls, chatOutToolCall{ID: b.ID, Type: "function", Function: chatOutFunction{Name: b.Name, Arguments: args}})
		case "tool_result":
			if m.Role != "user" {
				return nil, badRequest(CodeUnsupportedContent, bp+".type", "tool_result blocks belong in user turns.")
			}
			if b.ToolUseID == "" {
				return nil, badRequest(CodeMissingParameter, bp+".tool_use_id", "A tool_result block needs 'tool_use_id'.")
			}
			var text strings.Builder
			if b.IsError {
				text.WriteString("Error: ")
			}
			if b.Content != nil {
				for k, c := range *b.Content {
					switch c.Type {
					case "text":
						text.WriteString(c.Text)
					case "image", "document":
						p, err := openAIPartFromSource(bp+".content."+strconv.Itoa(k), &c)
						if err != nil {
							return nil, err
						}
						parts = append(parts, p)
					default:
						return nil, badRequest(CodeUnsupportedContent, bp+".content."+strconv.Itoa(k)+".type", "A tool result may hold text, image and document blocks, not %q.", c.Type)
					}
				}
			}
			out = append(out, openAIMessageOut{Role: "tool", ToolCallID: b.ToolUseID, Content: text.String()})
		case "thinking", "redacted_thinking":
			// Signed reasoning of Claude's: no other provider can use it.
		default:
			return nil, badRequest(CodeUnsupportedContent, bp+".type", "Content block type %q is not supported for this model (served by an OpenAI-style provider); use text, image, document, tool_use or tool_result.", b.Type)
		}
	}
	msg := openAIMessageOut{Role: m.Role, ToolCalls: calls}
	switch {
	case len(parts) == 1 && parts[0].Type == "text":
		msg.Content = parts[0].Text
	case len(parts) > 0 && m.Role == "assistant":
		// Assistant content is text only: join it.
		var sb strings.Builder
		for _, p := range parts {
			sb.WriteString(p.Text)
		}
		msg.Content = sb.String()
	case len(parts) > 0:
		msg.Content = parts
	}
	if msg.Content != nil || len(msg.ToolCalls) > 0 {
		out = append(out, msg)
	}
	return out, nil
}

func openAIPartFromSource(param string, b *anthropicBlock) (openAIPartOut, error) {
	s := b.Source
	if s == nil {
		return openAIPartOut{}, badRequest(CodeMissingParameter, param+".source", "An %s block needs a 'source'.", b.Type)
	}
	switch {
	case b.Type == "image" && s.Type == "base64":
		return openAIPartOut{Type: "image_url", ImageURL: &openAIURLOut{URL: "data:" + s.MediaType + ";base64," + s.Data}}, nil
	case b.Type == "image" && s.Type == "url":
		return openAIPartOut{Type: "image_url", ImageURL: &openAIURLOut{URL: s.URL}}, nil
	case b.Type == "document" && s.Type == "base64":
		return openAIPartOut{Type: "file", File: &openAIFileOut{Filename: b.Title, FileData: "data:" + s.MediaType + ";base64," + s.Data}}, nil
	case b.Type == "document" && s.Type == "text":
		return openAIPartOut{Type: "text", Text: s.Data}, nil
	}
	return openAIPartOut{}, badRequest(CodeUnsupportedContent, param+".source.type", "A %s source of type %q is not supported for this model (served by an OpenAI-style provider); send it as base64.", b.Type, s.Type)
}

// openAIStopReason maps finish_reason to stop_reason.
func openAIStopReason(finish string) string {
	switch finish {
	case "length":
		return "max_tokens"
	case "tool_calls", "function_call":
		return "tool_use"
	case "content_filter":
		return "refusal"
	}
	return "end_turn"
}

func (anthropicToOpenAI) response(t Target, o ResponseOptions) handler {
	return &openAIChatToAnthropic{opts: o, model: t.UpstreamModel, block: -1}
}

// openAIChatToAnthropic translates Chat Completions responses into
// Messages responses.
type openAIChatToAnthropic struct {
	opts  ResponseOptions
	model string

	started  bool
	block    int    // index of the open content block, -1 when none
	kind     string // its kind: text or tool_use
	tool     int    // OpenAI tool index of the open tool_use block
	nextTool int    // lowest OpenAI tool index a new call may have
	next     int    // index of the next content block
	finish   string
	finished bool
}

func (h *openAIChatToAnthropic) contentType(stream bool, _ string) string {
	if stream {
		return "text/event-stream"
	}
	return "application/json"
}

func (*openAIChatToAnthropic) forwardsBody() bool { return false }

type openAIChatResponse struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content   *string `json:"content"`
			Refusal   *string `json:"refusal"`
			ToolCalls []struct {
				ID       string `json:"id"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *openAIUsage `json:"usage"`
}

// anthropicUsageJSON renders Usage in Anthropic's convention, where
// input_tokens leaves out cache reads and writes.
func appendAnthropicUsage(b []byte, u Usage) []byte {
	b = append(b, `{"input_tokens":`...)
	b = appendInt(b, u.InputTokens-u.CachedInputTokens-u.CacheWriteInputTokens)
	b = appendIntMember(b, "cache_creation_input_tokens", u.CacheWriteInputTokens)
	b = appendIntMember(b, "cache_read_input_tokens", u.CachedInputTokens)
	b = appendIntMember(b, "output_tokens", u.OutputTokens)
	return append(b, '}')
}

// toolInput turns OpenAI's arguments string into the object Anthropic's
// input is; arguments that are not a JSON object (cut short by a length
// limit) become {}, and stop_reason max_tokens tells the client why.
func toolInput(args string) json.RawMessage {
	a := strings.TrimSpace(args)
	if len(a) > 0 && a[0] == '{' && json.Valid([]byte(a)) {
		return json.RawMessage(a)
	}
	return json.RawMessage("{}")
}

func (h *openAIChatToAnthropic) body(dst, b []byte, m *usageMeter) ([]byte, error) {
	var r openAIChatResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	var u Usage
	if r.Usage != nil {
		u = r.Usage.usage()
		m.report(u, true)
	}
	model := r.Model
	if model == "" {
		model = h.model
	}
	var blocks []anthropicBlock
	finish := ""
	if len(r.Choices) > 0 {
		c := r.Choices[0]
		finish = c.FinishReason
		if c.Message.Content != nil && *c.Message.Content != "" {
			blocks = append(blocks, anthropicBlock{Type: "text", Text: *c.Message.Content})
			m.addOutput(*c.Message.Content)
		}
		if c.Message.Refusal != nil && *c.Message.Refusal != "" {
			blocks = append(blocks, anthropicBlock{Type: "text", Text: *c.Message.Refusal})
			m.addOutput(*c.Message.Refusal)
		}
		for _, tc := range c.Message.ToolCalls {
			m.addOutput(tc.Function.Arguments)
			blocks = append(blocks, anthropicBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: toolInput(tc.Function.Arguments)})
		}
	}
	if blocks == nil {
		blocks = []anthropicBlock{}
	}
	content, err := marshal(blocks)
	if err != nil {
		return nil, err
	}
	dst = append(dst, `{"id":`...)
	dst = appendJSONString(dst, responseID(r.ID, h.opts.RequestID))
	dst = append(dst, `,"type":"message","role":"assistant","model":`...)
	dst = appendJSONString(dst, model)
	dst = append(dst, `,"content":`...)
	dst = append(dst, content...)
	dst = append(dst, `,"stop_reason":`...)
	dst = appendJSONString(dst, openAIStopReason(finish))
	dst = append(dst, `,"stop_sequence":null,"usage":`...)
	dst = appendAnthropicUsage(dst, u)
	return append(dst, '}'), nil
}

// openAIChunk is the part of a chat.completion.chunk this translator reads.
type openAIChunk struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Content   string `json:"content"`
			Refusal   string `json:"refusal"`
			ToolCalls []struct {
				Index    int    `json:"index"`
				ID       string `json:"id"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *openAIUsage    `json:"usage"`
	Error json.RawMessage `json:"error"`
	XGroq *struct {
		Usage *openAIUsage `json:"usage"`
	} `json:"x_groq"`
}

func (h *openAIChatToAnthropic) event(dst []byte, ev *SSEEvent, m *usageMeter) ([]byte, error) {
	if !ev.HasData || h.finished {
		return dst, nil
	}
	data := bytes.TrimSpace(ev.Data)
	if string(data) == "[DONE]" {
		return h.finishMessage(dst, m), nil
	}
	var c openAIChunk
	if err := json.Unmarshal(data, &c); err != nil {
		if ev.Truncated {
			return dst, nil
		}
		return dst, err
	}
	if len(c.Error) > 0 && string(c.Error) != "null" {
		pe := parseProviderError(data)
		se := &StreamError{Type: pe.typ, Message: pe.message}
		h.finished = true
		return appendSSE(dst, "error", anthropicErrorBody("api_error", pe.message)), se
	}
	if !h.started {
		dst = h.start(dst, c.ID, c.Model)
	}
	switch {
	case c.Usage != nil:
		m.report(c.Usage.usage(), true)
	case c.XGroq != nil && c.XGroq.Usage != nil && !m.final:
		m.report(c.XGroq.Usage.usage(), true)
	}
	for _, ch := range c.Choices {
		if ch.Index != 0 {
			continue // Messages has one answer; n > 1 cannot be asked for
		}
		d := ch.Delta
		if text := d.Content + d.Refusal; text != "" {
			if h.kind != "text" {
				dst = h.closeBlock(dst)
				dst = h.openBlock(dst, "text", `{"type":"text","text":""}`)
			}
			m.addOutput(text)
			dst = h.delta(dst, `{"type":"text_delta","text":`, text)
		}
		for _, tc := range d.ToolCalls {
			if h.kind != "tool_use" || tc.Index != h.tool {
				// A new call. OpenAI streams calls one after another, each
				// index once; a delta for a call already closed cannot be
				// placed in a Messages stream.
				if tc.Index < h.nextTool {
					return dst, errBadBlock(tc.Index)
				}
				id := tc.ID
				if id == "" {
					id = "toolu_" + h.opts.RequestID + "_" + strconv.Itoa(tc.Index)
				}
				dst = h.closeBlock(dst)
				start := append([]byte(`{"type":"tool_use","id":`), appendJSONString(nil, id)...)
				start = append(start, `,"name":`...)
				start = appendJSONString(start, tc.Function.Name)
				start = append(start, `,"input":{}}`...)
				dst = h.openBlock(dst, "tool_use", string(start))
				h.tool, h.nextTool = tc.Index, tc.Index+1
			}
			if tc.Function.Arguments != "" {
				m.addOutput(tc.Function.Arguments)
				dst = h.delta(dst, `{"type":"input_json_delta","partial_json":`, tc.Function.Arguments)
			}
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			h.finish = *ch.FinishReason
		}
	}
	return dst, nil
}

func (h *openAIChatToAnthropic) start(dst []byte, id, model string) []byte {
	h.started, h.block = true, -1
	if model == "" {
		model = h.model
	}
	var b []byte
	b = append(b, `{"type":"message_start","message":{"id":`...)
	b = appendJSONString(b, responseID(id, h.opts.RequestID))
	b = append(b, `,"type":"message","role":"assistant","model":`...)
	b = appendJSONString(b, model)
	b = append(b, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}`...)
	return appendSSE(dst, "message_start", b)
}

func (h *openAIChatToAnthropic) openBlock(dst []byte, kind, block string) []byte {
	h.block, h.kind = h.next, kind
	h.next++
	b := append([]byte(`{"type":"content_block_start","index":`), strconv.Itoa(h.block)...)
	b = append(b, `,"content_block":`...)
	b = append(b, block...)
	b = append(b, '}')
	return appendSSE(dst, "content_block_start", b)
}

func (h *openAIChatToAnthropic) delta(dst []byte, prefix, s string) []byte {
	b := append([]byte(`{"type":"content_block_delta","index":`), strconv.Itoa(h.block)...)
	b = append(b, `,"delta":`...)
	b = append(b, prefix...)
	b = appendJSONString(b, s)
	b = append(b, "}}"...)
	return appendSSE(dst, "content_block_delta", b)
}

func (h *openAIChatToAnthropic) closeBlock(dst []byte) []byte {
	if h.block < 0 {
		return dst
	}
	b := append([]byte(`{"type":"content_block_stop","index":`), strconv.Itoa(h.block)...)
	b = append(b, '}')
	h.block, h.kind = -1, ""
	return appendSSE(dst, "content_block_stop", b)
}

// finishMessage ends the Messages stream once OpenAI's has ended: the usage
// chunk comes after the finish_reason chunk, so message_delta (which
// carries both) waits for [DONE].
func (h *openAIChatToAnthropic) finishMessage(dst []byte, m *usageMeter) []byte {
	h.finished = true
	if !h.started {
		dst = h.start(dst, "", "")
	}
	dst = h.closeBlock(dst)
	b := []byte(`{"type":"message_delta","delta":{"stop_reason":`)
	b = appendJSONString(b, openAIStopReason(h.finish))
	b = append(b, `,"stop_sequence":null},"usage":`...)
	b = appendAnthropicUsage(b, m.usage())
	b = append(b, '}')
	dst = appendSSE(dst, "message_delta", b)
	return appendSSE(dst, "message_stop", []byte(`{"type":"message_stop"}`))
}

func (h *openAIChatToAnthropic) end(dst []byte, m *usageMeter) ([]byte, error) {
	if !h.finished && h.finish != "" {
		// Some servers end without [DONE]; a finish reason is enough.
		return h.finishMessage(dst, m), nil
	}
	return dst, nil
}
