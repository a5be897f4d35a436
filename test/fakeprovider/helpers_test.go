package fakeprovider

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

var allKinds = []Kind{OpenAI, AzureOpenAI, Anthropic, Gemini}

func startFake(t *testing.T, kind Kind, opts Options) *Server {
	t.Helper()
	s, err := New(kind, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// credentials are the headers that authenticate a request to s.
func credentials(s *Server) http.Header {
	h := http.Header{}
	switch s.Kind() {
	case OpenAI:
		h.Set("Authorization", "Bearer "+s.APIKey())
	case AzureOpenAI:
		h.Set("api-key", s.APIKey())
	case Anthropic:
		h.Set("x-api-key", s.APIKey())
		h.Set("anthropic-version", "2023-06-01")
	case Gemini:
		h.Set("x-goog-api-key", s.APIKey())
	}
	return h
}

// chatReq is a chat request in provider-neutral terms; build renders it in
// the API of a kind.
type chatReq struct {
	model     string // "" means the kind's first default model
	system    string
	user      string
	stream    bool
	maxTokens int
	tool      string // offer a tool of this name, with a {location, days} schema
	reasoning bool
	toolDone  bool // end the conversation with the tool's result
}

var toolSchema = map[string]any{"type": "object", "properties": map[string]any{
	"location": map[string]any{"type": "string"}, "days": map[string]any{"type": "integer"},
}}

func (q chatReq) build(kind Kind) (path string, body []byte) {
	model := q.model
	if model == "" {
		model = DefaultModels(kind)[0]
	}
	var v map[string]any
	switch kind {
	case OpenAI, AzureOpenAI:
		msgs := []any{}
		if q.system != "" {
			msgs = append(msgs, map[string]any{"role": "system", "content": q.system})
		}
		msgs = append(msgs, map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": q.user}}})
		if q.toolDone {
			msgs = append(msgs,
				map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{"id": "call_1", "type": "function", "function": map[string]any{"name": q.tool, "arguments": "{}"}}}},
				map[string]any{"role": "tool", "tool_call_id": "call_1", "content": "sunny"})
		}
		v = map[string]any{"model": model, "messages": msgs}
		if q.stream {
			v["stream"] = true
			v["stream_options"] = map[string]any{"include_usage": true}
		}
		if q.maxTokens > 0 {
			v["max_completion_tokens"] = q.maxTokens
		}
		if q.tool != "" {
			v["tools"] = []any{map[string]any{"type": "function", "function": map[string]any{"name": q.tool, "parameters": toolSchema}}}
		}
		if q.reasoning {
			v["reasoning_effort"] = "low"
		}
		path = "/v1/chat/completions"
		if kind == AzureOpenAI {
			path = "/openai/deployments/" + model + "/chat/completions?api-version=2024-10-21"
			delete(v, "model")
		}
	case Anthropic:
		msgs := []any{map[string]any{"role": "user", "content": q.user}}
		if q.toolDone {
			msgs = append(msgs,
				map[string]any{"role": "assistant", "content": []any{map[string]any{"type": "tool_use", "id": "toolu_1", "name": q.tool, "input": map[string]any{}}}},
				map[string]any{"role": "user", "content": []any{map[string]any{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}}})
		}
		maxTokens := 1024
		if q.maxTokens > 0 {
			maxTokens = q.maxTokens
		}
		v = map[string]any{"model": model, "max_tokens": maxTokens, "messages": msgs}
		if q.system != "" {
			v["system"] = []any{map[string]any{"type": "text", "text": q.system}}
		}
		if q.stream {
			v["stream"] = true
		}
		if q.tool != "" {
			v["tools"] = []any{map[string]any{"name": q.tool, "input_schema": toolSchema}}
		}
		if q.reasoning {
			v["thinking"] = map[string]any{"type": "enabled", "budget_tokens": 1024}
		}
		path = "/v1/messages"
	case Gemini:
		contents := []any{map[string]any{"role": "user", "parts": []any{map[string]any{"text": q.user}}}}
		if q.toolDone {
			contents = append(contents,
				map[string]any{"role": "model", "parts": []any{map[string]any{"functionCall": map[string]any{"name": q.tool, "args": map[string]any{}}}}},
				map[string]any{"role": "user", "parts": []any{map[string]any{"functionResponse": map[string]any{"name": q.tool, "response": map[string]any{"result": "sunny"}}}}})
		}
		v = map[string]any{"contents": contents}
		if q.system != "" {
			v["systemInstruction"] = map[string]any{"parts": []any{map[string]any{"text": q.system}}}
		}
		gen := map[string]any{}
		if q.maxTokens > 0 {
			gen["maxOutputTokens"] = q.maxTokens
		}
		if q.reasoning {
			gen["thinkingConfig"] = map[string]any{"thinkingBudget": 1024, "includeThoughts": true}
		}
		if len(gen) > 0 {
			v["generationConfig"] = gen
		}
		if q.tool != "" {
			v["tools"] = []any{map[string]any{"functionDeclarations": []any{map[string]any{"name": q.tool, "parameters": toolSchema}}}}
		}
		path = "/v1beta/models/" + model + ":generateContent"
		if q.stream {
			path = "/v1beta/models/" + model + ":streamGenerateContent?alt=sse"
		}
	}
	body, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return path, body
}

type reply struct {
	status int
	header http.Header
	body   []byte
	err    error // reading the body, e.g. an unexpected EOF after a cut
}

func do(t *testing.T, s *Server, method, path string, h http.Header, body []byte) reply {
	t.Helper()
	req, err := http.NewRequest(method, s.URL()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// chat sends q to s with s's credentials and the extra headers (name,
// value pairs).
func chat(t *testing.T, s *Server, q chatReq, headers ...string) reply {
	t.Helper()
	path, body := q.build(s.Kind())
	h := credentials(s)
	for i := 0; i+1 < len(headers); i += 2 {
		h.Set(headers[i], headers[i+1])
	}
	return do(t, s, http.MethodPost, path, h, body)
}

type sseEvent struct {
	name string
	data string
}

// parseSSE splits a stream into events; lines may end in LF or CRLF.
func parseSSE(body []byte) []sseEvent {
	text := strings.ReplaceAll(string(body), "\r\n", "\n")
	var out []sseEvent
	for _, block := range strings.Split(text, "\n\n") {
		var ev sseEvent
		var data []string
		for _, line := range strings.Split(block, "\n") {
			switch {
			case strings.HasPrefix(line, "event:"):
				ev.name = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "data:"):
				data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
			}
		}
		if ev.name != "" || len(data) > 0 {
			ev.data = strings.Join(data, "\n")
			out = append(out, ev)
		}
	}
	return out
}

// jsonOf decodes JSON or fails the test.
func jsonOf(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return v
}

// get walks a dotted path ("choices.0.message.content") through decoded JSON.
func get(v any, path string) any {
	for _, p := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// num reads a JSON number at path as an int; -1 when absent.
func num(v any, path string) int {
	f, ok := get(v, path).(float64)
	if !ok {
		return -1
	}
	return int(f)
}

// streamed is what a client makes of a streamed reply.
type streamed struct {
	text   string         // the reply text, deltas joined
	args   string         // tool-call arguments, deltas joined
	tool   string         // the called tool's name
	finish string         // the finish/stop reason
	usage  map[string]int // the last usage reported, in the provider's field names (dotted)
	events []sseEvent
	done   bool // the stream's terminal event arrived
}

func parseStream(t *testing.T, kind Kind, body []byte) streamed {
	t.Helper()
	var s streamed
	s.events = parseSSE(body)
	flat := func(v any) map[string]int {
		m := map[string]int{}
		var walk func(prefix string, v any)
		walk = func(prefix string, v any) {
			switch x := v.(type) {
			case map[string]any:
				for k, e := range x {
					walk(strings.TrimPrefix(prefix+"."+k, "."), e)
				}
			case float64:
				m[prefix] = int(x)
			}
		}
		walk("", v)
		return m
	}
	for _, ev := range s.events {
		if ev.data == "[DONE]" {
			s.done = true
			continue
		}
		v := jsonOf(t, []byte(ev.data))
		switch kind {
		case OpenAI, AzureOpenAI:
			if c, ok := get(v, "choices.0.delta.content").(string); ok {
				s.text += c
			}
			if n, ok := get(v, "choices.0.delta.tool_calls.0.function.name").(string); ok {
				s.tool = n
			}
			if a, ok := get(v, "choices.0.delta.tool_calls.0.function.arguments").(string); ok {
				s.args += a
			}
			if f, ok := get(v, "choices.0.finish_reason").(string); ok {
				s.finish = f
			}
			if u, ok := get(v, "usage").(map[string]any); ok {
				s.usage = flat(u)
			}
		case Anthropic:
			switch ev.name {
			case "content_block_start":
				if n, ok := get(v, "content_block.name").(string); ok {
					s.tool = n
				}
			case "content_block_delta":
				if x, ok := get(v, "delta.text").(string); ok {
					s.text += x
				}
				if x, ok := get(v, "delta.partial_json").(string); ok {
					s.args += x
				}
			case "message_start":
				if u, ok := get(v, "message.usage").(map[string]any); ok {
					s.usage = flat(u)
				}
			case "message_delta":
				s.finish, _ = get(v, "delta.stop_reason").(string)
				if u, ok := get(v, "usage").(map[string]any); ok {
					s.usage = flat(u)
				}
			case "message_stop":
				s.done = true
			}
		case Gemini:
			parts, _ := get(v, "candidates.0.content.parts").([]any)
			for _, p := range parts {
				if thought, _ := get(p, "thought").(bool); thought {
					continue
				}
				if x, ok := get(p, "text").(string); ok {
					s.text += x
				}
				if n, ok := get(p, "functionCall.name").(string); ok {
					s.tool = n
					a, _ := json.Marshal(get(p, "functionCall.args"))
					s.args = string(a)
				}
			}
			if f, ok := get(v, "candidates.0.finishReason").(string); ok {
				s.finish = f
				s.done = true
			}
			if u, ok := get(v, "usageMetadata").(map[string]any); ok {
				s.usage = flat(u)
			}
		}
	}
	return s
}

// recorder is a TB that keeps the failures it is told of.
type recorder struct{ errors []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
