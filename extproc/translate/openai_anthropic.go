package translate

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// openAIToAnthropic serves OpenAI Chat Completions clients from Anthropic's
// Messages API. docs/translation.md has the field-by-field table.
type openAIToAnthropic struct{}

// reasoningBudget maps reasoning_effort to a thinking budget in tokens.
// They are the budgets Gemini's OpenAI endpoint uses, so that one effort
// means about the same on both providers.
func reasoningBudget(effort string) (int64, bool) {
	switch effort {
	case "low":
		return 1024, true
	case "medium":
		return 8192, true
	case "high":
		return 24576, true
	}
	return 0, false
}

func (openAIToAnthropic) request(t Target, body []byte) (ProviderRequest, error) {
	r, err := parseChat(body)
	if err != nil {
		return ProviderRequest{}, err
	}
	if r.N != nil && *r.N > 1 {
		return ProviderRequest{}, badRequest(CodeUnsupportedParameter, "n", "This model is served by Anthropic, which returns one choice per request: set 'n' to 1 (or leave it out) and send several requests instead.")
	}
	if r.Logprobs != nil && *r.Logprobs {
		return ProviderRequest{}, badRequest(CodeUnsupportedParameter, "logprobs", "This model is served by Anthropic, which does not return log probabilities: leave 'logprobs' out.")
	}
	if err := checkTextOnlyOutput(r); err != nil {
		return ProviderRequest{}, err
	}
	ar := anthropicRequest{Model: t.UpstreamModel, Stream: r.stream()}
	if n, ok := r.maxOutputTokens(); ok {
		ar.MaxTokens = n
	} else {
		ar.MaxTokens = t.maxTokens()
	}
	ar.MaxTokens = t.capOutput(ar.MaxTokens)

	var system anthropicContent
	for i := range r.Messages {
		m := &r.Messages[i]
		param := "messages[" + strconv.Itoa(i) + "]"
		var role string
		var blocks []anthropicBlock
		switch m.Role {
		case "system", "developer":
			// Anthropic has one system prompt, before the conversation:
			// every system and developer message goes there, in order.
			system = append(system, textBlocks(&m.Content)...)
			continue
		case "user":
			role = "user"
			if blocks, err = anthropicUserBlocks(param, &m.Content); err != nil {
				return ProviderRequest{}, err
			}
		case "assistant":
			role = "assistant"
			blocks = textBlocks(&m.Content)
			for j, tc := range m.ToolCalls {
				input, err := toolArguments(param+".tool_calls["+strconv.Itoa(j)+"].function.arguments", tc.Function.Arguments)
				if err != nil {
					return ProviderRequest{}, err
				}
				blocks = append(blocks, anthropicBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: input})
			}
		case "tool":
			// Tool results travel in a user turn, as tool_result blocks
			// that name the tool_use they answer.
			role = "user"
			content, err := anthropicToolResultContent(param, &m.Content)
			if err != nil {
				return ProviderRequest{}, err
			}
			tr := anthropicBlock{Type: "tool_result", ToolUseID: m.ToolCallID}
			if len(content) > 0 {
				tr.Content = &content
			}
			blocks = []anthropicBlock{tr}
		}
		if len(blocks) == 0 {
			// Anthropic refuses empty turns; an empty message adds nothing.
			continue
		}
		// Anthropic wants user and assistant turns to alternate: consecutive
		// messages of one role (several tool results, a tool result then a
		// user remark) become one turn.
		if n := len(ar.Messages); n > 0 && ar.Messages[n-1].Role == role {
			ar.Messages[n-1].Content = append(ar.Messages[n-1].Content, blocks...)
		} else {
			ar.Messages = append(ar.Messages, anthropicMessage{Role: role, Content: blocks})
		}
	}
	if len(ar.Messages) == 0 {
		return ProviderRequest{}, badRequest(CodeMissingParameter, "messages", "The conversation has no user or assistant message with content; Anthropic needs at least one.")
	}
	for i := range ar.Messages {
		if ar.Messages[i].Role == "user" {
			toolResultsFirst(ar.Messages[i].Content)
		}
	}

	for _, tool := range r.Tools {
		schema := tool.Function.Parameters
		if len(bytes.TrimSpace(schema)) == 0 || string(bytes.TrimSpace(schema)) == "null" {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		ar.Tools = append(ar.Tools, anthropicTool{Name: tool.Function.Name, Description: tool.Function.Description, InputSchema: schema})
	}
	tc, err := r.toolChoice()
	if err != nil {
		return ProviderRequest{}, err
	}
	noParallel := r.ParallelToolCalls != nil && !*r.ParallelToolCalls
	switch {
	case tc != nil && tc.mode == "none":
		ar.ToolChoice = &anthropicToolChoice{Type: "none"}
	case tc != nil && tc.mode == "required":
		ar.ToolChoice = &anthropicToolChoice{Type: "any", DisableParallelToolUse: noParallel}
	case tc != nil && tc.mode == "function":
		ar.ToolChoice = &anthropicToolChoice{Type: "tool", Name: tc.name, DisableParallelToolUse: noParallel}
	case noParallel && len(ar.Tools) > 0, tc != nil && tc.mode == "auto" && len(ar.Tools) > 0:
		ar.ToolChoice = &anthropicToolChoice{Type: "auto", DisableParallelToolUse: noParallel}
	}

	if len(r.Stop) > 0 {
		ar.StopSequences = r.Stop
	}
	if r.Temperature != nil {
		// OpenAI's range is 0-2, Anthropic's 0-1: the top of OpenAI's range
		// is clamped rather than refused, so that a client tuned for OpenAI
		// still works.
		v := min(*r.Temperature, 1)
		ar.Temperature = &v
	}
	ar.TopP = r.TopP
	if r.User != "" {
		ar.Metadata = &anthropicMetadata{UserID: r.User}
	}
	if rf := r.ResponseFormat; rf != nil {
		switch rf.Type {
		case "json_schema":
			// Anthropic's structured outputs: constrained decoding to the
			// schema on the models that have it (others answer 400, passed
			// on to the client). The JSON arrives as ordinary text.
			ar.OutputConfig = &anthropicOutputConfig{Format: &anthropicOutputFormat{Type: "json_schema", Schema: rf.JSONSchema.Schema}}
		case "json_object":
			// No JSON mode without a schema: ask for it in the system
			// prompt (best effort; the client should still check).
			system = append(system, anthropicBlock{Type: "text", Text: "Respond with a single valid JSON object and nothing else."})
		}
	}
	if budget, ok := reasoningBudget(r.ReasoningEffort); ok {
		if _, set := r.maxOutputTokens(); !set {
			ar.MaxTokens = t.capOutput(budget + t.maxTokens())
		}
		if ar.MaxTokens <= budget {
			budget = ar.MaxTokens - 1
		}
		if budget < 1024 && t.MaxOutputTokens > 0 && ar.MaxTokens == t.MaxOutputTokens {
			return ProviderRequest{}, badRequest(CodeInvalidValue, "reasoning_effort", "With 'reasoning_effort', this model (served by Anthropic) needs an output limit above 1024 tokens, but its deployment caps output at %d: leave 'reasoning_effort' out or set it to none.", t.MaxOutputTokens)
		}
		if budget < 1024 {
			return ProviderRequest{}, badRequest(CodeInvalidValue, "max_completion_tokens", "With 'reasoning_effort', this model (served by Anthropic) needs 'max_completion_tokens' above 1024: thinking takes at least 1024 tokens of it.")
		}
		ar.Thinking = &anthropicThinking{Type: "enabled", BudgetTokens: budget}
		// Anthropic allows no sampling changes while thinking.
		ar.Temperature, ar.TopP = nil, nil
	} else if r.ReasoningEffort != "" && r.ReasoningEffort != "none" && r.ReasoningEffort != "minimal" {
		return ProviderRequest{}, badRequest(CodeInvalidValue, "reasoning_effort", "Unknown 'reasoning_effort' %q; use none, minimal, low, medium or high.", r.ReasoningEffort)
	}
	if len(system) > 0 {
		ar.System = &system
	}
	out, err := marshal(&ar)
	if err != nil {
		return ProviderRequest{}, err
	}
	return ProviderRequest{
		Method:  "POST",
		Path:    t.path("/v1/messages"),
		Body:    out,
		Headers: []Header{{Name: "anthropic-version", Value: anthropicVersion(t)}},
		Response: ResponseOptions{
			Stream:       ar.Stream,
			IncludeUsage: r.includeUsage(),
		},
	}, nil
}

// checkTextOnlyOutput refuses requests for audio output, which only OpenAI
// produces.
func checkTextOnlyOutput(r *chatRequest) error {
	for _, m := range r.Modalities {
		if m != "text" {
			return badRequest(CodeUnsupportedParameter, "modalities", "This model returns text only; remove %q from 'modalities'.", m)
		}
	}
	if len(r.Audio) > 0 && string(r.Audio) != "null" {
		return badRequest(CodeUnsupportedParameter, "audio", "This model returns text only; leave 'audio' out.")
	}
	return nil
}

// textBlocks returns a text-only content as text blocks, skipping empty
// text (Anthropic refuses empty text blocks). Refusal parts of an assistant
// message are text too.
func textBlocks(c *chatContent) []anthropicBlock {
	if !c.IsArr {
		if c.Text == "" {
			return nil
		}
		return []anthropicBlock{{Type: "text", Text: c.Text}}
	}
	var out []anthropicBlock
	for _, p := range c.Parts {
		text := p.Text
		if p.Type == "refusal" {
			text = p.Refusal
		}
		if text == "" {
			continue
		}
		out = append(out, anthropicBlock{Type: "text", Text: text, CacheControl: p.CacheControl})
	}
	return out
}

func anthropicUserBlocks(param string, c *chatContent) ([]anthropicBlock, error) {
	if !c.IsArr {
		return textBlocks(c), nil
	}
	var out []anthropicBlock
	for j, p := range c.Parts {
		pp := param + ".content[" + strconv.Itoa(j) + "]"
		switch p.Type {
		case "text":
			if p.Text != "" {
				out = append(out, anthropicBlock{Type: "text", Text: p.Text, CacheControl: p.CacheControl})
			}
		case "image_url":
			src, err := anthropicImageSource(pp+".image_url.url", p.ImageURL.URL)
			if err != nil {
				return nil, err
			}
			out = append(out, anthropicBlock{Type: "image", Source: src, CacheControl: p.CacheControl})
		case "file":
			if p.File.FileData == "" {
				return nil, badRequest(CodeUnsupportedContent, pp+".file.file_id", "Uploaded files ('file_id') live at OpenAI and cannot reach this model (served by Anthropic); send the file inline in 'file_data' as a data: URL.")
			}
			mt, data, ok := parseDataURL(p.File.FileData)
			if !ok || mt != "application/pdf" {
				return nil, badRequest(CodeUnsupportedContent, pp+".file.file_data", "This model (served by Anthropic) takes PDF files only, as a data:application/pdf;base64,... URL.")
			}
			out = append(out, anthropicBlock{Type: "document", Source: &anthropicSource{Type: "base64", MediaType: mt, Data: data}, Title: p.File.Filename, CacheControl: p.CacheControl})
		case "input_audio":
			return nil, badRequest(CodeUnsupportedContent, pp+".type", "This model (served by Anthropic) does not take audio input.")
		}
	}
	return out, nil
}

func anthropicImageSource(param, u string) (*anthropicSource, error) {
	if mt, data, ok := parseDataURL(u); ok {
		switch mt {
		case "image/jpeg", "image/png", "image/gif", "image/webp":
			return &anthropicSource{Type: "base64", MediaType: mt, Data: data}, nil
		}
		return nil, badRequest(CodeUnsupportedContent, param, "Image type %q is not supported by this model (served by Anthropic); send JPEG, PNG, GIF or WebP.", mt)
	}
	if strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") {
		return &anthropicSource{Type: "url", URL: u}, nil
	}
	return nil, badRequest(CodeInvalidValue, param, "An image URL must be an http(s) URL or a data:image/...;base64,... URL.")
}

func anthropicToolResultContent(param string, c *chatContent) (anthropicContent, error) {
	// Anthropic refuses empty text blocks; an empty result has no content.
	if !c.IsArr {
		if c.Text == "" {
			return nil, nil
		}
		return anthropicContent{{Type: "text", Text: c.Text}}, nil
	}
	var out anthropicContent
	for j, p := range c.Parts {
		switch p.Type {
		case "text":
			if p.Text != "" {
				out = append(out, anthropicBlock{Type: "text", Text: p.Text})
			}
		case "image_url":
			src, err := anthropicImageSource(param+".content["+strconv.Itoa(j)+"].image_url.url", p.ImageURL.URL)
			if err != nil {
				return nil, err
			}
			out = append(out, anthropicBlock{Type: "image", Source: src})
		}
	}
	return out, nil
}

// toolArguments parses a tool call's arguments (a JSON string holding an
// object) into the object Anthropic's tool_use input is.
func toolArguments(param, args string) (json.RawMessage, error) {
	a := strings.TrimSpace(args)
	if a == "" {
		return json.RawMessage("{}"), nil
	}
	if !json.Valid([]byte(a)) || a[0] != '{' {
		return nil, badRequest(CodeInvalidValue, param, "Tool call arguments must be a JSON object encoded as a string, e.g. \"{\\\"city\\\":\\\"Paris\\\"}\"; these are not (cut short by a length limit?).")
	}
	return json.RawMessage(a), nil
}

// toolResultsFirst moves tool_result blocks to the front of a user turn, as
// Anthropic requires, keeping the order within each kind.
func toolResultsFirst(blocks []anthropicBlock) {
	k := 0
	for i := range blocks {
		if blocks[i].Type == "tool_result" {
			if i != k {
				b := blocks[i]
				copy(blocks[k+1:i+1], blocks[k:i])
				blocks[k] = b
			}
			k++
		}
	}
}

// anthropicFinishReason maps stop_reason to finish_reason.
func anthropicFinishReason(stop string) string {
	switch stop {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	}
	// end_turn, stop_sequence, pause_turn, and whatever comes next.
	return "stop"
}

func (openAIToAnthropic) response(t Target, o ResponseOptions) handler {
	return &anthropicToOpenAIChat{opts: o, model: t.UpstreamModel}
}

// anthropicToOpenAIChat translates Anthropic responses into Chat
// Completions.
type anthropicToOpenAIChat struct {
	opts  ResponseOptions
	model string

	w       chunkWriter
	started bool
	blocks  []blockKind // by Anthropic content block index
	tools   int         // tool calls so far: the OpenAI tool_calls index
	acc     anthropicUsage
	stopped bool // message_stop seen
}

type blockKind struct {
	kind     string // text, tool_use, thinking, or other
	tool     int    // OpenAI tool_calls index of a tool_use block
	argBytes int    // argument bytes sent for a tool_use block
}

// maxBlocks bounds the block index a provider may use, so that a bad index
// cannot make the translator allocate without limit.
const maxBlocks = 4096

func (h *anthropicToOpenAIChat) contentType(stream bool, _ string) string {
	if stream {
		return "text/event-stream"
	}
	return "application/json"
}

func (*anthropicToOpenAIChat) forwardsBody() bool { return false }

func (h *anthropicToOpenAIChat) body(dst, b []byte, m *usageMeter) ([]byte, error) {
	var ar anthropicResponse
	if err := json.Unmarshal(b, &ar); err != nil {
		return nil, err
	}
	u := ar.Usage.usage()
	m.report(u, true)
	msg := chatOutMessage{Role: "assistant"}
	var text, reasoning strings.Builder
	for _, blk := range ar.Content {
		switch blk.Type {
		case "text":
			text.WriteString(blk.Text)
		case "thinking":
			reasoning.WriteString(blk.Thinking)
		case "tool_use":
			msg.ToolCalls = append(msg.ToolCalls, chatOutToolCall{
				ID: blk.ID, Type: "function",
				Function: chatOutFunction{Name: blk.Name, Arguments: compactArgs(blk.Input)},
			})
		}
	}
	if text.Len() > 0 || len(msg.ToolCalls) == 0 {
		s := text.String()
		msg.Content = &s
	}
	msg.ReasoningContent = reasoning.String()
	stop := ""
	if ar.StopReason != nil {
		stop = *ar.StopReason
	}
	model := ar.Model
	if model == "" {
		model = h.model
	}
	cc := chatCompletion{
		ID:      responseID(ar.ID, h.opts.RequestID),
		Object:  "chat.completion",
		Created: h.opts.Created,
		Model:   model,
		Choices: []chatChoice{{Index: 0, Message: msg, Logprobs: jsonNull, FinishReason: anthropicFinishReason(stop)}},
		Usage:   appendOpenAIUsage(nil, u),
	}
	out, err := marshal(&cc)
	return append(dst, out...), err
}

// compactArgs renders a tool_use input as the JSON string OpenAI's
// arguments are.
func compactArgs(input json.RawMessage) string {
	if len(bytes.TrimSpace(input)) == 0 {
		return "{}"
	}
	var buf bytes.Buffer
	if json.Compact(&buf, input) != nil {
		return string(input)
	}
	return buf.String()
}

func (h *anthropicToOpenAIChat) event(dst []byte, ev *SSEEvent, m *usageMeter) ([]byte, error) {
	if !ev.HasData {
		return dst, nil
	}
	typ := anthropicEventType(ev)
	if typ == "ping" || typ == "" {
		return dst, nil
	}
	var e anthropicEvent
	if err := json.Unmarshal(ev.Data, &e); err != nil {
		if ev.Truncated {
			return dst, nil // the stream was cut inside this event
		}
		return dst, err
	}
	if e.Type == "" {
		e.Type = typ
	}
	switch e.Type {
	case "message_start":
		id, model := "", h.model
		if e.Message != nil {
			id = e.Message.ID
			if e.Message.Model != "" {
				model = e.Message.Model
			}
			h.acc.merge(e.Message.Usage)
			m.report(h.acc.usage(), false)
		}
		h.start(id, model)
		dst = h.w.role(dst, 0)
	case "content_block_start":
		h.ensureStarted(&dst)
		if e.Index < 0 || e.Index >= maxBlocks || e.ContentBlock == nil {
			return dst, errBadBlock(e.Index)
		}
		for len(h.blocks) <= e.Index {
			h.blocks = append(h.blocks, blockKind{kind: "other"})
		}
		cb := e.ContentBlock
		bk := blockKind{kind: cb.Type}
		switch cb.Type {
		case "text":
			if cb.Text != "" {
				m.addOutput(cb.Text)
				dst = h.w.text(dst, 0, "content", cb.Text)
			}
		case "tool_use":
			bk.tool = h.tools
			h.tools++
			args := ""
			// Deltas normally carry the input; a server that sends it
			// whole in the start event is covered too.
			if in := bytes.TrimSpace(cb.Input); len(in) > 0 && string(in) != "{}" {
				args = compactArgs(in)
			}
			bk.argBytes = len(args)
			dst = h.w.toolStart(dst, 0, bk.tool, cb.ID, cb.Name, args, nil)
		case "thinking":
			if cb.Thinking != "" {
				dst = h.w.text(dst, 0, "reasoning_content", cb.Thinking)
			}
		}
		h.blocks[e.Index] = bk
	case "content_block_delta":
		h.ensureStarted(&dst)
		if e.Delta == nil {
			return dst, nil
		}
		switch e.Delta.Type {
		case "text_delta":
			if e.Delta.Text != "" {
				m.addOutput(e.Delta.Text)
				dst = h.w.text(dst, 0, "content", e.Delta.Text)
			}
		case "input_json_delta":
			// Input of a server tool (web search) has no OpenAI form.
			if e.Index < 0 || e.Index >= len(h.blocks) || h.blocks[e.Index].kind != "tool_use" {
				return dst, nil
			}
			if e.Delta.PartialJSON != "" {
				m.addOutput(e.Delta.PartialJSON)
				h.blocks[e.Index].argBytes += len(e.Delta.PartialJSON)
				dst = h.w.toolArgs(dst, 0, h.blocks[e.Index].tool, e.Delta.PartialJSON)
			}
		case "thinking_delta":
			if e.Delta.Thinking != "" {
				m.addOutput(e.Delta.Thinking)
				dst = h.w.text(dst, 0, "reasoning_content", e.Delta.Thinking)
			}
		}
		// signature_delta and citations_delta have no OpenAI form.
	case "content_block_stop":
		if e.Index >= 0 && e.Index < len(h.blocks) {
			if b := &h.blocks[e.Index]; b.kind == "tool_use" && b.argBytes == 0 {
				// A call without arguments: OpenAI clients parse the
				// arguments string, and "" is not JSON.
				b.argBytes = 2
				dst = h.w.toolArgs(dst, 0, b.tool, "{}")
			}
		}
	case "message_delta":
		h.ensureStarted(&dst)
		h.acc.merge(e.Usage)
		m.report(h.acc.usage(), true)
		stop := ""
		if e.Delta != nil {
			stop = e.Delta.StopReason
		}
		dst = h.w.finish(dst, 0, anthropicFinishReason(stop))
	case "message_stop":
		h.ensureStarted(&dst)
		h.stopped = true
		if h.opts.IncludeUsage {
			dst = h.w.usage(dst, m.usage())
		}
		dst = append(dst, sseDone...)
	case "error":
		se := &StreamError{Type: "api_error", Message: "The provider reported an error."}
		if e.Error != nil {
			se.Type, se.Message = e.Error.Type, e.Error.Message
		}
		h.ensureStarted(&dst)
		return h.w.errorEvent(dst, anthropicErrorStatus(se.Type), se.Message, se.Type), se
	}
	return dst, nil
}

func (h *anthropicToOpenAIChat) start(id, model string) {
	h.started = true
	h.w = newChunkWriter(responseID(id, h.opts.RequestID), model, h.opts.Created, h.opts.IncludeUsage)
}

// ensureStarted covers a stream whose message_start went missing.
func (h *anthropicToOpenAIChat) ensureStarted(dst *[]byte) {
	if !h.started {
		h.start("", h.model)
		*dst = h.w.role(*dst, 0)
	}
}

func (h *anthropicToOpenAIChat) end(dst []byte, _ *usageMeter) ([]byte, error) {
	// A stream cut before message_stop ends without [DONE], so that the
	// client can tell it was cut.
	return dst, nil
}

type badBlockError int

func (e badBlockError) Error() string {
	return "content block index " + strconv.Itoa(int(e)) + " out of order or out of range"
}

func errBadBlock(i int) error { return badBlockError(i) }
