package fakeprovider

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
)

// openAIDialect is the OpenAI API: Chat Completions, Embeddings, Responses
// and the models list.
type openAIDialect struct{}

func (openAIDialect) authorize(c *call) bool {
	auth := c.r.Header.Get("Authorization")
	if auth == "" {
		c.openAIFail(http.StatusUnauthorized, "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.", "invalid_request_error", nil, nil)
		return false
	}
	key, _ := strings.CutPrefix(auth, "Bearer ")
	if key != c.s.opts.APIKey {
		c.openAIFail(http.StatusUnauthorized, "Incorrect API key provided: "+maskKey(key)+". You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", nil, "invalid_api_key")
		return false
	}
	return true
}

func (openAIDialect) serve(c *call) {
	path, method := c.r.URL.Path, c.r.Method
	switch {
	case method == http.MethodPost && path == "/v1/chat/completions":
		openAIChat(c, "")
	case method == http.MethodPost && path == "/v1/embeddings":
		openAIEmbeddings(c, "")
	case method == http.MethodPost && path == "/v1/responses":
		openAIResponses(c)
	case method == http.MethodGet && path == "/v1/models":
		data := []any{}
		for _, m := range c.s.opts.Models {
			data = append(data, openAIModel(m))
		}
		c.writeJSON(http.StatusOK, obj{"object": "list", "data": data})
	case method == http.MethodGet && strings.HasPrefix(path, "/v1/models/"):
		m := strings.TrimPrefix(path, "/v1/models/")
		if !c.serves(m) {
			c.openAIFail(http.StatusNotFound, "The model '"+m+"' does not exist", "invalid_request_error", "model", "model_not_found")
			return
		}
		c.writeJSON(http.StatusOK, openAIModel(m))
	default:
		c.openAIFail(http.StatusNotFound, "Invalid URL ("+method+" "+path+")", "invalid_request_error", nil, nil)
	}
}

func openAIModel(id string) obj {
	return obj{"id": id, "object": "model", "created": Created, "owned_by": "system"}
}

func (openAIDialect) writeError(c *call, status int, msg string) {
	typ, code := "invalid_request_error", any(nil)
	def := ""
	switch status {
	case http.StatusBadRequest:
		def = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
	case http.StatusUnauthorized:
		def, code = "Incorrect API key provided: "+maskKey(c.s.opts.APIKey)+". You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_api_key"
	case http.StatusForbidden:
		def, code = "You are not allowed to sample from this model", "model_not_found"
	case http.StatusNotFound:
		def, code = "The model `"+c.rec.Model()+"` does not exist or you do not have access to it.", "model_not_found"
	case http.StatusTooManyRequests:
		typ, code = "requests", "rate_limit_exceeded"
		def = "Rate limit reached for " + c.rec.Model() + " in organization org-fake on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s."
	case http.StatusInternalServerError:
		typ, def = "server_error", "The server had an error while processing your request. Sorry about that!"
	default:
		typ, def = "server_error", "The server is overloaded or not ready yet."
	}
	if msg == "" {
		msg = def
	}
	c.openAIFail(status, msg, typ, nil, code)
}

// openAIFail answers with OpenAI's error shape.
func (c *call) openAIFail(status int, msg, typ string, param, code any) {
	if c.b.RetryAfter != "" {
		c.w.Header().Set("Retry-After", c.b.RetryAfter)
	}
	c.w.Header().Set("x-request-id", c.id("req_"))
	c.writeJSON(status, obj{"error": obj{"message": msg, "type": typ, "param": param, "code": code}})
}

// maskKey shows a key as OpenAI's 401 does: a few characters at each end.
func maskKey(key string) string {
	if len(key) <= 12 {
		return strings.Repeat("*", len(key))
	}
	return key[:3] + strings.Repeat("*", len(key)-7) + key[len(key)-4:]
}

type openAIChatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Tools []struct {
		Function struct {
			Name       string          `json:"name"`
			Parameters json.RawMessage `json:"parameters"`
		} `json:"function"`
	} `json:"tools"`
	Stream        bool `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           int    `json:"max_tokens"`
	MaxCompletionTokens int    `json:"max_completion_tokens"`
	ReasoningEffort     string `json:"reasoning_effort"`
}

// openAIChat answers Chat Completions, for OpenAI (deployment "") and for an
// Azure deployment, which names the model instead of the body.
func openAIChat(c *call, deployment string) {
	var req openAIChatRequest
	if err := c.decode(&req); err != nil {
		c.s.dialect.writeError(c, http.StatusBadRequest, "")
		return
	}
	model := req.Model
	if deployment != "" {
		model = deployment
	} else {
		if model == "" {
			c.openAIFail(http.StatusBadRequest, "you must provide a model parameter", "invalid_request_error", nil, nil)
			return
		}
		if !c.serves(model) {
			c.s.dialect.writeError(c, http.StatusNotFound, "")
			return
		}
	}
	if len(req.Messages) == 0 {
		c.openAIFail(http.StatusBadRequest, "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.", "invalid_request_error", "messages", "empty_array")
		return
	}

	conv := conversation{model: model, maxTokens: max(req.MaxTokens, req.MaxCompletionTokens)}
	conv.reasoning = req.ReasoningEffort != "" && req.ReasoningEffort != "none"
	for i, m := range req.Messages {
		text := textOf(m.Content)
		conv.prompt = append(conv.prompt, text)
		if i == len(req.Messages)-1 && m.Role == "user" {
			conv.lastUser = text
		}
	}
	for _, t := range req.Tools {
		conv.tools = append(conv.tools, tool{name: t.Function.Name, schema: t.Function.Parameters})
	}
	a := c.reply(conv)
	c.setUsage(a.usage)
	azure := deployment != ""
	finish := "stop"
	switch {
	case a.call != nil:
		finish = "tool_calls"
	case a.truncated:
		finish = "length"
	}
	callID := c.id("call_")

	if !req.Stream {
		msg := obj{"role": "assistant", "content": a.text, "refusal": nil, "annotations": []any{}}
		if a.call != nil {
			msg["content"] = nil
			msg["tool_calls"] = []any{obj{"id": callID, "type": "function", "function": obj{"name": a.call.name, "arguments": a.call.args}}}
		}
		choice := obj{"index": 0, "message": msg, "logprobs": nil, "finish_reason": finish}
		body := obj{
			"id": c.id("chatcmpl-"), "object": "chat.completion", "created": Created, "model": model,
			"choices": []any{choice}, "service_tier": "default", "system_fingerprint": nil,
		}
		if azure {
			delete(body, "service_tier")
			body["system_fingerprint"] = "fp_fake"
			body["prompt_filter_results"] = []any{obj{"prompt_index": 0, "content_filter_results": azureFilters()}}
			choice["content_filter_results"] = azureFilters()
		}
		if !c.b.NoUsage {
			body["usage"] = openAIUsage(a.usage)
		}
		c.writeJSON(http.StatusOK, body)
		if !c.b.NoUsage {
			c.usageSent()
		}
		return
	}

	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	id := c.id("chatcmpl-")
	chunk := func(choices []any) obj {
		ch := obj{
			"id": id, "object": "chat.completion.chunk", "created": Created, "model": model,
			"service_tier": "default", "system_fingerprint": nil, "choices": choices,
		}
		if includeUsage {
			ch["usage"] = nil
		}
		if azure {
			delete(ch, "service_tier")
			ch["system_fingerprint"] = "fp_fake"
		} else {
			ch["obfuscation"] = "fake" // OpenAI pads chunks to hide token lengths
		}
		return ch
	}
	delta := func(d obj, finish any) obj {
		choice := obj{"index": 0, "delta": d, "finish_reason": finish}
		if azure {
			// Azure's filter verdict comes with each piece of content.
			choice["content_filter_results"] = obj{}
			if c, _ := d["content"].(string); c != "" {
				choice["content_filter_results"] = azureFilters()
			}
		}
		return chunk([]any{choice})
	}

	st := c.startStream("text/event-stream; charset=utf-8", "\n")
	if azure {
		// Azure opens with the prompt's content-filter results, in a chunk
		// with no choices and empty id and model.
		st.sse("", obj{"choices": []any{}, "created": 0, "id": "", "model": "", "object": "",
			"prompt_filter_results": []any{obj{"prompt_index": 0, "content_filter_results": azureFilters()}}})
	}
	if a.call != nil {
		st.sse("", delta(obj{"role": "assistant", "content": nil, "refusal": nil, "tool_calls": []any{
			obj{"index": 0, "id": callID, "type": "function", "function": obj{"name": a.call.name, "arguments": ""}},
		}}, nil))
		for _, piece := range splitArgs(a.call.args) {
			st.sse("", delta(obj{"tool_calls": []any{obj{"index": 0, "function": obj{"arguments": piece}}}}, nil))
		}
	} else {
		st.sse("", delta(obj{"role": "assistant", "content": "", "refusal": nil}, nil))
		for _, piece := range a.words {
			st.sse("", delta(obj{"content": piece}, nil))
		}
	}
	st.sse("", delta(obj{}, finish))
	if includeUsage && !c.b.NoUsage {
		last := chunk([]any{})
		last["usage"] = openAIUsage(a.usage)
		st.sse("", last)
		c.usageSent()
	}
	st.sse("", "[DONE]")
}

func openAIUsage(u Usage) obj {
	return obj{
		"prompt_tokens":     u.InputTokens,
		"completion_tokens": u.OutputTokens,
		"total_tokens":      u.InputTokens + u.OutputTokens,
		"prompt_tokens_details": obj{
			"cached_tokens": u.CachedTokens,
			"audio_tokens":  0,
		},
		"completion_tokens_details": obj{
			"reasoning_tokens":           u.ReasoningTokens,
			"audio_tokens":               0,
			"accepted_prediction_tokens": 0,
			"rejected_prediction_tokens": 0,
		},
	}
}

// openAIEmbeddings answers Embeddings, for OpenAI (deployment "") and Azure.
func openAIEmbeddings(c *call, deployment string) {
	var req struct {
		Model          string          `json:"model"`
		Input          json.RawMessage `json:"input"`
		EncodingFormat string          `json:"encoding_format"`
		Dimensions     int             `json:"dimensions"`
	}
	if err := c.decode(&req); err != nil {
		c.s.dialect.writeError(c, http.StatusBadRequest, "")
		return
	}
	model := req.Model
	if deployment != "" {
		model = deployment
	} else if !c.serves(model) {
		c.s.dialect.writeError(c, http.StatusNotFound, "")
		return
	}
	inputs, tokens := embeddingInputs(req.Input)
	if len(inputs) == 0 {
		c.openAIFail(http.StatusBadRequest, "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", "invalid_request_error", nil, nil)
		return
	}
	dims := req.Dimensions
	if dims <= 0 {
		dims = defaultEmbedDims
	}
	data := []any{}
	for i, in := range inputs {
		v := embedding(in, dims)
		var vec any = v
		if req.EncodingFormat == "base64" {
			b := make([]byte, 4*len(v))
			for j, x := range v {
				binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(x))
			}
			vec = base64.StdEncoding.EncodeToString(b)
		}
		data = append(data, obj{"object": "embedding", "index": i, "embedding": vec})
	}
	u := Usage{InputTokens: tokens}
	c.setUsage(u)
	body := obj{"object": "list", "data": data, "model": model}
	if !c.b.NoUsage {
		body["usage"] = obj{"prompt_tokens": tokens, "total_tokens": tokens}
	}
	c.writeJSON(http.StatusOK, body)
	if !c.b.NoUsage {
		c.usageSent()
	}
}

// embeddingInputs reads an input that is a string, strings, a token array or
// token arrays; it returns each input as text (for the vector) and the
// total token count.
func embeddingInputs(raw json.RawMessage) (texts []string, tokens int) {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, Tokens(one)
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, s := range many {
			tokens += Tokens(s)
		}
		return many, tokens
	}
	var ids []int
	if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 {
		return []string{fmt.Sprint(ids)}, len(ids)
	}
	var idLists [][]int
	if json.Unmarshal(raw, &idLists) == nil {
		for _, l := range idLists {
			texts = append(texts, fmt.Sprint(l))
			tokens += len(l)
		}
	}
	return texts, tokens
}
