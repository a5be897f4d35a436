package fakeprovider

import (
	"encoding/json"
	"net/http"
	"strings"
)

// anthropicDialect is Anthropic's Messages API.
type anthropicDialect struct{}

func (anthropicDialect) authorize(c *call) bool {
	switch key := c.r.Header.Get("x-api-key"); {
	case key == "":
		c.anthropicFail(http.StatusUnauthorized, "authentication_error", "x-api-key header is required")
		return false
	case key != c.s.opts.APIKey:
		c.anthropicFail(http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
		return false
	}
	if c.r.Header.Get("anthropic-version") == "" {
		c.anthropicFail(http.StatusBadRequest, "invalid_request_error", "anthropic-version: header is required")
		return false
	}
	return true
}

func (anthropicDialect) serve(c *call) {
	switch p := c.r.URL.Path; {
	case c.r.Method == http.MethodPost && p == "/v1/messages":
		anthropicMessages(c, false)
	case c.r.Method == http.MethodPost && p == "/v1/messages/count_tokens":
		anthropicMessages(c, true)
	case c.r.Method == http.MethodGet && p == "/v1/models":
		data := []any{}
		for _, m := range c.s.opts.Models {
			data = append(data, obj{"type": "model", "id": m, "display_name": m, "created_at": "2026-01-01T00:00:00Z"})
		}
		models := c.s.opts.Models
		body := obj{"data": data, "has_more": false, "first_id": nil, "last_id": nil}
		if len(models) > 0 {
			body["first_id"], body["last_id"] = models[0], models[len(models)-1]
		}
		c.writeJSON(http.StatusOK, body)
	default:
		c.anthropicFail(http.StatusNotFound, "not_found_error", "Not Found")
	}
}

func (anthropicDialect) writeError(c *call, status int, msg string) {
	typ, def := "api_error", "Internal server error"
	switch status {
	case http.StatusBadRequest:
		typ, def = "invalid_request_error", "Invalid request"
	case http.StatusUnauthorized:
		typ, def = "authentication_error", "invalid x-api-key"
	case http.StatusForbidden:
		typ, def = "permission_error", "Your API key does not have permission to use the specified resource."
	case http.StatusNotFound:
		typ, def = "not_found_error", "model: "+c.rec.Model()
	case http.StatusRequestEntityTooLarge:
		typ, def = "request_too_large", "Request exceeds the maximum allowed number of bytes."
	case http.StatusTooManyRequests:
		typ, def = "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit. Please reduce the prompt length or the maximum tokens requested, or try again later."
	case 529:
		typ, def = "overloaded_error", "Overloaded"
	}
	if msg == "" {
		msg = def
	}
	c.anthropicFail(status, typ, msg)
}

// anthropicFail answers with Anthropic's error shape.
func (c *call) anthropicFail(status int, typ, msg string) {
	if c.b.RetryAfter != "" {
		c.w.Header().Set("Retry-After", c.b.RetryAfter)
	}
	id := c.id("req_")
	c.w.Header().Set("request-id", id)
	c.writeJSON(status, obj{"type": "error", "error": obj{"type": typ, "message": msg}, "request_id": id})
}

// anthropicMessages answers /v1/messages, or /v1/messages/count_tokens
// when countOnly.
func anthropicMessages(c *call, countOnly bool) {
	var req struct {
		Model     string          `json:"model"`
		MaxTokens *int            `json:"max_tokens"`
		System    json.RawMessage `json:"system"`
		Messages  []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Tools []struct {
			Name        string          `json:"name"`
			InputSchema json.RawMessage `json:"input_schema"`
		} `json:"tools"`
		Stream   bool `json:"stream"`
		Thinking *struct {
			Type string `json:"type"`
		} `json:"thinking"`
	}
	if err := c.decode(&req); err != nil {
		c.anthropicFail(http.StatusBadRequest, "invalid_request_error", "There was an error parsing the body of your request: "+err.Error())
		return
	}
	var missing []string
	if req.Model == "" {
		missing = append(missing, "model: Field required")
	}
	if req.Messages == nil {
		missing = append(missing, "messages: Field required")
	}
	if req.MaxTokens == nil && !countOnly {
		missing = append(missing, "max_tokens: Field required")
	}
	if len(missing) > 0 {
		c.anthropicFail(http.StatusBadRequest, "invalid_request_error", strings.Join(missing, "; "))
		return
	}
	if !c.serves(req.Model) {
		c.anthropicFail(http.StatusNotFound, "not_found_error", "model: "+req.Model)
		return
	}

	conv := conversation{model: req.Model}
	if req.MaxTokens != nil {
		conv.maxTokens = *req.MaxTokens
	}
	conv.reasoning = req.Thinking != nil && req.Thinking.Type == "enabled"
	if s := textOf(req.System); s != "" {
		conv.prompt = append(conv.prompt, s)
	}
	for i, m := range req.Messages {
		text := textOf(m.Content)
		conv.prompt = append(conv.prompt, text)
		if i == len(req.Messages)-1 && m.Role == "user" && !hasToolResult(m.Content) {
			conv.lastUser = text
		}
	}
	for _, t := range req.Tools {
		conv.tools = append(conv.tools, tool{name: t.Name, schema: t.InputSchema})
	}
	a := c.reply(conv)
	if countOnly {
		c.writeJSON(http.StatusOK, obj{"input_tokens": a.usage.InputTokens})
		return
	}
	c.setUsage(a.usage)

	u := a.usage
	stop := "end_turn"
	switch {
	case a.call != nil:
		stop = "tool_use"
	case a.truncated:
		stop = "max_tokens"
	}
	msgID, toolID := c.id("msg_"), c.id("toolu_")
	var args any = obj{}
	if a.call != nil {
		_ = json.Unmarshal([]byte(a.call.args), &args) // the fake's own JSON
	}
	signature := "fake-signature-" + msgID

	if !req.Stream {
		var content []any
		if a.thinking != "" {
			content = append(content, obj{"type": "thinking", "thinking": a.thinking, "signature": signature})
		}
		if a.call != nil {
			content = append(content, obj{"type": "tool_use", "id": toolID, "name": a.call.name, "input": args})
		} else {
			content = append(content, obj{"type": "text", "text": a.text})
		}
		body := obj{
			"id": msgID, "type": "message", "role": "assistant", "model": req.Model, "content": content,
			"stop_reason": stop, "stop_sequence": nil,
		}
		if !c.b.NoUsage {
			body["usage"] = obj{
				"input_tokens":                u.InputTokens - u.CachedTokens - u.CacheWriteTokens,
				"cache_creation_input_tokens": u.CacheWriteTokens,
				"cache_read_input_tokens":     u.CachedTokens,
				"cache_creation":              obj{"ephemeral_5m_input_tokens": u.CacheWriteTokens, "ephemeral_1h_input_tokens": 0},
				"output_tokens":               u.OutputTokens,
				"service_tier":                "standard",
			}
		}
		c.writeJSON(http.StatusOK, body)
		if !c.b.NoUsage {
			c.usageSent()
		}
		return
	}

	st := c.startStream("text/event-stream; charset=utf-8", "\n")
	event := func(name string, payload obj) {
		payload["type"] = name
		st.sse(name, payload)
	}
	message := obj{
		"id": msgID, "type": "message", "role": "assistant", "model": req.Model, "content": []any{},
		"stop_reason": nil, "stop_sequence": nil,
	}
	if !c.b.NoUsage {
		// message_start reports the prompt and a first output count;
		// message_delta the final, cumulative counts.
		message["usage"] = obj{
			"input_tokens":                u.InputTokens - u.CachedTokens - u.CacheWriteTokens,
			"cache_creation_input_tokens": u.CacheWriteTokens,
			"cache_read_input_tokens":     u.CachedTokens,
			"cache_creation":              obj{"ephemeral_5m_input_tokens": u.CacheWriteTokens, "ephemeral_1h_input_tokens": 0},
			"output_tokens":               1,
			"service_tier":                "standard",
		}
	}
	event("message_start", obj{"message": message})
	index := 0
	if a.thinking != "" {
		event("content_block_start", obj{"index": index, "content_block": obj{"type": "thinking", "thinking": "", "signature": ""}})
		event("ping", obj{})
		half := len(a.thinking) / 2
		for _, piece := range []string{a.thinking[:half], a.thinking[half:]} {
			event("content_block_delta", obj{"index": index, "delta": obj{"type": "thinking_delta", "thinking": piece}})
		}
		event("content_block_delta", obj{"index": index, "delta": obj{"type": "signature_delta", "signature": signature}})
		event("content_block_stop", obj{"index": index})
		index++
	}
	if a.call != nil {
		event("content_block_start", obj{"index": index, "content_block": obj{"type": "tool_use", "id": toolID, "name": a.call.name, "input": obj{}}})
		if index == 0 {
			event("ping", obj{})
		}
		for _, piece := range splitArgs(a.call.args) {
			event("content_block_delta", obj{"index": index, "delta": obj{"type": "input_json_delta", "partial_json": piece}})
		}
	} else {
		event("content_block_start", obj{"index": index, "content_block": obj{"type": "text", "text": ""}})
		if index == 0 {
			event("ping", obj{})
		}
		for _, piece := range a.words {
			event("content_block_delta", obj{"index": index, "delta": obj{"type": "text_delta", "text": piece}})
		}
	}
	event("content_block_stop", obj{"index": index})
	delta := obj{"delta": obj{"stop_reason": stop, "stop_sequence": nil}}
	if !c.b.NoUsage {
		delta["usage"] = obj{
			"input_tokens":                u.InputTokens - u.CachedTokens - u.CacheWriteTokens,
			"cache_creation_input_tokens": u.CacheWriteTokens,
			"cache_read_input_tokens":     u.CachedTokens,
			"output_tokens":               u.OutputTokens,
		}
	}
	event("message_delta", delta)
	if !c.b.NoUsage {
		c.usageSent()
	}
	event("message_stop", obj{})
}

// hasToolResult says whether Anthropic message content carries a tool
// result, which makes the message the tool's answer rather than the user's.
func hasToolResult(content json.RawMessage) bool {
	var blocks []struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(content, &blocks) // a plain string has no blocks
	for _, b := range blocks {
		if b.Type == "tool_result" {
			return true
		}
	}
	return false
}
