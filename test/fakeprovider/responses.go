package fakeprovider

import (
	"encoding/json"
	"net/http"
)

// openAIResponses answers OpenAI's Responses API, JSON and SSE.
func openAIResponses(c *call) {
	var req struct {
		Model           string          `json:"model"`
		Input           json.RawMessage `json:"input"`
		Instructions    string          `json:"instructions"`
		Tools           json.RawMessage `json:"tools"`
		Stream          bool            `json:"stream"`
		MaxOutputTokens int             `json:"max_output_tokens"`
		Reasoning       *struct {
			Effort string `json:"effort"`
		} `json:"reasoning"`
	}
	if err := c.decode(&req); err != nil {
		c.s.dialect.writeError(c, http.StatusBadRequest, "")
		return
	}
	if req.Model == "" {
		c.openAIFail(http.StatusBadRequest, "Missing required parameter: 'model'.", "invalid_request_error", "model", "missing_required_parameter")
		return
	}
	if !c.serves(req.Model) {
		c.s.dialect.writeError(c, http.StatusNotFound, "")
		return
	}

	conv := conversation{model: req.Model, maxTokens: req.MaxOutputTokens}
	if req.Instructions != "" {
		conv.prompt = append(conv.prompt, req.Instructions)
	}
	conv.reasoning = req.Reasoning != nil && req.Reasoning.Effort != "" && req.Reasoning.Effort != "none"
	var text string
	if json.Unmarshal(req.Input, &text) == nil {
		conv.prompt = append(conv.prompt, text)
		conv.lastUser = text
	} else {
		var items []struct {
			Type    string          `json:"type"`
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
			Output  json.RawMessage `json:"output"`
		}
		if err := json.Unmarshal(req.Input, &items); err != nil || len(items) == 0 {
			c.openAIFail(http.StatusBadRequest, "Invalid value for 'input': expected a string or an array of input items.", "invalid_request_error", "input", "invalid_value")
			return
		}
		for i, it := range items {
			t := textOf(it.Content) + textOf(it.Output)
			conv.prompt = append(conv.prompt, t)
			if i == len(items)-1 && it.Role == "user" && (it.Type == "" || it.Type == "message") {
				conv.lastUser = t
			}
		}
	}
	var tools []struct {
		Type       string          `json:"type"`
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
	}
	_ = json.Unmarshal(req.Tools, &tools) // no tools, no tool calls
	for _, t := range tools {
		if t.Type == "function" {
			conv.tools = append(conv.tools, tool{name: t.Name, schema: t.Parameters})
		}
	}
	a := c.reply(conv)
	c.setUsage(a.usage)

	status, incomplete, last := "completed", any(nil), "response.completed"
	if a.truncated {
		status, incomplete, last = "incomplete", obj{"reason": "max_output_tokens"}, "response.incomplete"
	}
	var usage any
	if !c.b.NoUsage {
		usage = obj{
			"input_tokens":          a.usage.InputTokens,
			"input_tokens_details":  obj{"cached_tokens": a.usage.CachedTokens},
			"output_tokens":         a.usage.OutputTokens,
			"output_tokens_details": obj{"reasoning_tokens": a.usage.ReasoningTokens},
			"total_tokens":          a.usage.InputTokens + a.usage.OutputTokens,
		}
	}
	response := func(status string, output []any, usage any) obj {
		r := obj{
			"id": c.id("resp_"), "object": "response", "created_at": Created, "status": status,
			"error": nil, "incomplete_details": nil, "instructions": nil, "max_output_tokens": nil,
			"model": req.Model, "output": output, "parallel_tool_calls": true, "previous_response_id": nil,
			"reasoning": obj{"effort": nil, "summary": nil}, "store": true, "temperature": 1.0,
			"text": obj{"format": obj{"type": "text"}}, "tool_choice": "auto", "tools": []any{},
			"top_p": 1.0, "truncation": "disabled", "usage": usage, "user": nil, "metadata": obj{},
		}
		if req.Instructions != "" {
			r["instructions"] = req.Instructions
		}
		if req.MaxOutputTokens > 0 {
			r["max_output_tokens"] = req.MaxOutputTokens
		}
		if req.Reasoning != nil && req.Reasoning.Effort != "" {
			r["reasoning"] = obj{"effort": req.Reasoning.Effort, "summary": nil}
		}
		if len(req.Tools) > 0 && string(req.Tools) != "null" {
			r["tools"] = req.Tools
		}
		if status == "incomplete" {
			r["incomplete_details"] = incomplete
		}
		return r
	}

	// The output items, finished.
	var output []any
	if a.usage.ReasoningTokens > 0 {
		output = append(output, obj{"id": c.id("rs_"), "type": "reasoning", "summary": []any{}})
	}
	msgID, fcID, callID := c.id("msg_"), c.id("fc_"), c.id("call_")
	part := obj{"type": "output_text", "text": a.text, "annotations": []any{}, "logprobs": []any{}}
	var item obj
	if a.call != nil {
		item = obj{"id": fcID, "type": "function_call", "status": "completed", "arguments": a.call.args, "call_id": callID, "name": a.call.name}
	} else {
		item = obj{"id": msgID, "type": "message", "status": "completed", "role": "assistant", "content": []any{part}}
	}
	output = append(output, item)

	if !req.Stream {
		c.writeJSON(http.StatusOK, response(status, output, usage))
		if usage != nil {
			c.usageSent()
		}
		return
	}

	st := c.startStream("text/event-stream; charset=utf-8", "\n")
	seq := 0
	event := func(name string, payload obj) {
		payload["type"] = name
		payload["sequence_number"] = seq
		seq++
		st.sse(name, payload)
	}
	event("response.created", obj{"response": response("in_progress", []any{}, nil)})
	event("response.in_progress", obj{"response": response("in_progress", []any{}, nil)})
	for i, it := range output[:len(output)-1] { // the reasoning item, if any
		event("response.output_item.added", obj{"output_index": i, "item": it})
		event("response.output_item.done", obj{"output_index": i, "item": it})
	}
	idx := len(output) - 1
	if a.call != nil {
		event("response.output_item.added", obj{"output_index": idx, "item": obj{
			"id": fcID, "type": "function_call", "status": "in_progress", "arguments": "", "call_id": callID, "name": a.call.name}})
		for _, piece := range splitArgs(a.call.args) {
			event("response.function_call_arguments.delta", obj{"item_id": fcID, "output_index": idx, "delta": piece})
		}
		event("response.function_call_arguments.done", obj{"item_id": fcID, "output_index": idx, "arguments": a.call.args})
	} else {
		event("response.output_item.added", obj{"output_index": idx, "item": obj{
			"id": msgID, "type": "message", "status": "in_progress", "role": "assistant", "content": []any{}}})
		at := obj{"item_id": msgID, "output_index": idx, "content_index": 0}
		with := func(kv obj) obj {
			out := obj{}
			for k, v := range at {
				out[k] = v
			}
			for k, v := range kv {
				out[k] = v
			}
			return out
		}
		event("response.content_part.added", with(obj{"part": obj{"type": "output_text", "text": "", "annotations": []any{}, "logprobs": []any{}}}))
		for _, piece := range a.words {
			event("response.output_text.delta", with(obj{"delta": piece, "logprobs": []any{}}))
		}
		event("response.output_text.done", with(obj{"text": a.text, "logprobs": []any{}}))
		event("response.content_part.done", with(obj{"part": part}))
	}
	event("response.output_item.done", obj{"output_index": idx, "item": item})
	event(last, obj{"response": response(status, output, usage)})
	if usage != nil {
		c.usageSent()
	}
}
