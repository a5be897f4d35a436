package fakeprovider

import (
	"encoding/json"
	"net/http"
	"strings"
)

// geminiDialect is the Gemini Developer API (generativelanguage.googleapis.com).
type geminiDialect struct{}

func (geminiDialect) authorize(c *call) bool {
	key := c.r.Header.Get("x-goog-api-key")
	if key == "" {
		key = c.r.URL.Query().Get("key")
	}
	switch {
	case key == "":
		c.geminiFail(http.StatusForbidden, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.", nil)
		return false
	case key != c.s.opts.APIKey:
		// Google answers a bad key with 400, not 401.
		msg := "API key not valid. Please pass a valid API key."
		c.geminiFail(http.StatusBadRequest, "INVALID_ARGUMENT", msg, []any{
			obj{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
				"metadata": obj{"service": "generativelanguage.googleapis.com"}},
			obj{"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": msg},
		})
		return false
	}
	return true
}

func (geminiDialect) serve(c *call) {
	path := c.r.URL.Path
	version := "v1beta"
	rest, ok := strings.CutPrefix(path, "/v1beta/models")
	if !ok {
		version = "v1"
		rest, ok = strings.CutPrefix(path, "/v1/models")
	}
	model, method, _ := strings.Cut(strings.TrimPrefix(rest, "/"), ":")
	switch {
	case ok && c.r.Method == http.MethodGet && model == "":
		models := []any{}
		for _, m := range c.s.opts.Models {
			models = append(models, geminiModel(m))
		}
		c.writeJSON(http.StatusOK, obj{"models": models})
	case ok && c.r.Method == http.MethodGet && method == "" && c.serves(model):
		c.writeJSON(http.StatusOK, geminiModel(model))
	case ok && c.r.Method == http.MethodPost && (method == "generateContent" || method == "streamGenerateContent" || method == "countTokens"):
		if !c.serves(model) {
			c.geminiFail(http.StatusNotFound, "NOT_FOUND", "models/"+model+" is not found for API version "+version+", or is not supported for "+method+". Call ListModels to see the list of available models and their supported methods.", nil)
			return
		}
		geminiGenerate(c, model, method)
	default:
		c.geminiFail(http.StatusNotFound, "NOT_FOUND", "The requested URL "+path+" was not found on this server.", nil)
	}
}

func geminiModel(m string) obj {
	return obj{
		"name": "models/" + m, "version": "001", "displayName": m,
		"inputTokenLimit": 1048576, "outputTokenLimit": 65536,
		"supportedGenerationMethods": []any{"generateContent", "countTokens"},
	}
}

func (geminiDialect) writeError(c *call, status int, msg string) {
	code, def := "UNKNOWN", "Unknown error."
	var details []any
	switch status {
	case http.StatusBadRequest:
		code, def = "INVALID_ARGUMENT", "Request contains an invalid argument."
	case http.StatusUnauthorized:
		code, def = "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."
	case http.StatusForbidden:
		code, def = "PERMISSION_DENIED", "The caller does not have permission"
	case http.StatusNotFound:
		code, def = "NOT_FOUND", "models/"+c.rec.Model()+" is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."
	case http.StatusTooManyRequests:
		code, def = "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."
		if c.b.RetryAfter != "" {
			// Google says when to retry in the body, not in a header.
			details = append(details, obj{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": c.b.RetryAfter + "s"})
		}
	case http.StatusInternalServerError:
		code, def = "INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
	case http.StatusServiceUnavailable:
		code, def = "UNAVAILABLE", "The model is overloaded. Please try again later."
	case http.StatusGatewayTimeout:
		code, def = "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."
	}
	if msg == "" {
		msg = def
	}
	c.geminiFail(status, code, msg, details)
}

// geminiFail answers with Google's error shape (google.rpc.Status as JSON).
func (c *call) geminiFail(status int, code, msg string, details []any) {
	e := obj{"code": status, "message": msg, "status": code}
	if len(details) > 0 {
		e["details"] = details
	}
	c.writeJSON(status, obj{"error": e})
}

type geminiPart struct {
	Text             string          `json:"text"`
	FunctionResponse json.RawMessage `json:"functionResponse"`
}

// geminiGenerate answers generateContent, streamGenerateContent and
// countTokens for model.
func geminiGenerate(c *call, model, method string) {
	var req struct {
		Contents []struct {
			Role  string       `json:"role"`
			Parts []geminiPart `json:"parts"`
		} `json:"contents"`
		SystemInstruction *struct {
			Parts []geminiPart `json:"parts"`
		} `json:"systemInstruction"`
		Tools []struct {
			FunctionDeclarations []struct {
				Name                 string          `json:"name"`
				Parameters           json.RawMessage `json:"parameters"`
				ParametersJSONSchema json.RawMessage `json:"parametersJsonSchema"`
			} `json:"functionDeclarations"`
		} `json:"tools"`
		GenerationConfig *struct {
			MaxOutputTokens int `json:"maxOutputTokens"`
			ThinkingConfig  *struct {
				ThinkingBudget  *int `json:"thinkingBudget"`
				IncludeThoughts bool `json:"includeThoughts"`
			} `json:"thinkingConfig"`
		} `json:"generationConfig"`
	}
	if err := c.decode(&req); err != nil {
		c.geminiFail(http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid JSON payload received. "+err.Error(), nil)
		return
	}
	if len(req.Contents) == 0 {
		c.geminiFail(http.StatusBadRequest, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified\n", nil)
		return
	}

	conv := conversation{model: model}
	partsText := func(parts []geminiPart) string {
		var texts []string
		for _, p := range parts {
			for _, t := range []string{p.Text, string(p.FunctionResponse)} {
				if t != "" {
					texts = append(texts, t)
				}
			}
		}
		return strings.Join(texts, "\n")
	}
	if req.SystemInstruction != nil {
		conv.prompt = append(conv.prompt, partsText(req.SystemInstruction.Parts))
	}
	for i, m := range req.Contents {
		text := partsText(m.Parts)
		conv.prompt = append(conv.prompt, text)
		toolAnswer := false
		for _, p := range m.Parts {
			toolAnswer = toolAnswer || len(p.FunctionResponse) > 0
		}
		if i == len(req.Contents)-1 && (m.Role == "user" || m.Role == "") && !toolAnswer {
			conv.lastUser = text
		}
	}
	for _, t := range req.Tools {
		for _, f := range t.FunctionDeclarations {
			schema := f.Parameters
			if len(schema) == 0 {
				schema = f.ParametersJSONSchema
			}
			conv.tools = append(conv.tools, tool{name: f.Name, schema: schema})
		}
	}
	includeThoughts := false
	if g := req.GenerationConfig; g != nil {
		conv.maxTokens = g.MaxOutputTokens
		if t := g.ThinkingConfig; t != nil {
			conv.reasoning = t.ThinkingBudget == nil || *t.ThinkingBudget != 0
			includeThoughts = t.IncludeThoughts
		}
	}
	a := c.reply(conv)
	u := a.usage
	promptDetails := []any{obj{"modality": "TEXT", "tokenCount": u.InputTokens}}
	if method == "countTokens" {
		c.writeJSON(http.StatusOK, obj{"totalTokens": u.InputTokens, "promptTokensDetails": promptDetails})
		return
	}
	c.setUsage(u)

	// usageMetadata leaves zero counts out, as Google's JSON does.
	usage := func(final bool) any {
		if c.b.NoUsage {
			return nil
		}
		m := obj{"promptTokenCount": u.InputTokens, "totalTokenCount": u.InputTokens, "promptTokensDetails": promptDetails}
		if u.CachedTokens > 0 {
			m["cachedContentTokenCount"] = u.CachedTokens
		}
		if final {
			if n := u.OutputTokens - u.ReasoningTokens; n > 0 {
				m["candidatesTokenCount"] = n
			}
			if u.ReasoningTokens > 0 {
				m["thoughtsTokenCount"] = u.ReasoningTokens
			}
			m["totalTokenCount"] = u.InputTokens + u.OutputTokens
		}
		return m
	}
	finish := "STOP"
	if a.truncated {
		finish = "MAX_TOKENS"
	}
	responseID := c.id("")
	chunk := func(parts []any, final bool) obj {
		cand := obj{"content": obj{"parts": parts, "role": "model"}, "index": 0}
		if final {
			cand["finishReason"] = finish
		}
		out := obj{"candidates": []any{cand}, "modelVersion": model, "responseId": responseID}
		if m := usage(final); m != nil {
			out["usageMetadata"] = m
		}
		return out
	}
	var thought []any
	if includeThoughts && a.thinking != "" {
		thought = []any{obj{"text": a.thinking, "thought": true}}
	}
	var callPart []any
	if a.call != nil {
		var args any = obj{}
		_ = json.Unmarshal([]byte(a.call.args), &args) // the fake's own JSON
		callPart = []any{obj{"functionCall": obj{"id": c.id("fc_"), "name": a.call.name, "args": args}}}
	}

	if method == "generateContent" {
		parts := append([]any{}, thought...)
		if a.call != nil {
			parts = append(parts, callPart...)
		} else {
			parts = append(parts, obj{"text": a.text})
		}
		c.writeJSON(http.StatusOK, chunk(parts, true))
		if !c.b.NoUsage {
			c.usageSent()
		}
		return
	}

	// The chunks of the stream: thoughts first, then one word or the whole
	// call per chunk; the last chunk has the finish reason and the full usage.
	var chunks []obj
	if thought != nil {
		chunks = append(chunks, chunk(thought, false))
	}
	if a.call != nil {
		chunks = append(chunks, chunk(callPart, true))
	} else {
		for i, piece := range a.words {
			chunks = append(chunks, chunk([]any{obj{"text": piece}}, i == len(a.words)-1))
		}
	}
	sse := c.r.URL.Query().Get("alt") == "sse"
	var st *stream
	if sse {
		st = c.startStream("text/event-stream", "\r\n") // Google ends SSE lines with CRLF
	} else {
		// Without alt=sse Google streams one JSON array, element by element.
		st = c.startStream("application/json; charset=UTF-8", "\r\n")
	}
	for i, ch := range chunks {
		if sse {
			st.sse("", ch)
		} else {
			b, _ := json.Marshal(ch) // maps of plain values always marshal
			sep := ",\r\n"
			if i == 0 {
				sep = "["
			}
			st.frame(sep + string(b))
		}
		if i == len(chunks)-1 && !c.b.NoUsage {
			c.usageSent()
		}
	}
	if !sse {
		st.frame("]")
	}
}
