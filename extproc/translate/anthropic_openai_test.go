package translate

import (
	"encoding/json"
	"strings"
	"testing"
)

var openAITarget = Target{Kind: KindOpenAI, UpstreamModel: "gpt-4.1"}

func TestAnthropicToOpenAIRequest(t *testing.T) {
	tests := []struct {
		name   string
		target Target
		in     string
		want   string
		path   string
	}{
		{
			name: "minimal with a system string",
			in:   `{"model":"claude","max_tokens":256,"system":"Be brief.","messages":[{"role":"user","content":"Hi"}]}`,
			want: `{"model":"gpt-4.1","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"max_completion_tokens":256}`,
		},
		{
			name: "system blocks joined; multi-turn; sampling; stop; user id; top_k dropped",
			in: `{"model":"c","max_tokens":10,"system":[{"type":"text","text":"A"},{"type":"text","text":"B","cache_control":{"type":"ephemeral"}}],
				"messages":[{"role":"user","content":[{"type":"text","text":"One"},{"type":"text","text":"Two"}]},{"role":"assistant","content":"Ok"},{"role":"user","content":"Three"}],
				"temperature":0.5,"top_p":0.9,"top_k":40,"stop_sequences":["X"],"metadata":{"user_id":"u1"}}`,
			want: `{"model":"gpt-4.1","messages":[{"role":"system","content":"A\n\nB"},
				{"role":"user","content":[{"type":"text","text":"One"},{"type":"text","text":"Two"}]},
				{"role":"assistant","content":"Ok"},{"role":"user","content":"Three"}],
				"max_completion_tokens":10,"stop":["X"],"temperature":0.5,"top_p":0.9,"user":"u1"}`,
		},
		{
			name: "tool use and results, with an error result, an image result and text after the results",
			in: `{"model":"c","max_tokens":10,"messages":[
				{"role":"user","content":"Go"},
				{"role":"assistant","content":[{"type":"thinking","thinking":"hmm","signature":"s"},{"type":"text","text":"Calling."},
					{"type":"tool_use","id":"toolu_1","name":"shot","input":{"url":"x"}},{"type":"tool_use","id":"toolu_2","name":"ls","input":{}}]},
				{"role":"user","content":[
					{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"taken"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBO"}}]},
					{"type":"tool_result","tool_use_id":"toolu_2","is_error":true,"content":"permission denied"},
					{"type":"text","text":"Now what?"}]}],
				"tools":[{"name":"shot","description":"Screenshot","input_schema":{"type":"object","properties":{"url":{"type":"string"}}}},{"name":"ls","input_schema":{"type":"object"}}],
				"tool_choice":{"type":"any","disable_parallel_tool_use":true}}`,
			want: `{"model":"gpt-4.1","messages":[
				{"role":"user","content":"Go"},
				{"role":"assistant","content":"Calling.","tool_calls":[
					{"id":"toolu_1","type":"function","function":{"name":"shot","arguments":"{\"url\":\"x\"}"}},
					{"id":"toolu_2","type":"function","function":{"name":"ls","arguments":"{}"}}]},
				{"role":"tool","content":"taken","tool_call_id":"toolu_1"},
				{"role":"tool","content":"Error: permission denied","tool_call_id":"toolu_2"},
				{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO"}},{"type":"text","text":"Now what?"}]}],
				"max_completion_tokens":10,
				"tools":[{"type":"function","function":{"name":"shot","description":"Screenshot","parameters":{"type":"object","properties":{"url":{"type":"string"}}}}},
					{"type":"function","function":{"name":"ls","parameters":{"type":"object"}}}],
				"tool_choice":"required","parallel_tool_calls":false}`,
		},
		{
			name: "images by URL, PDF and text documents",
			in: `{"model":"c","max_tokens":10,"messages":[{"role":"user","content":[
				{"type":"image","source":{"type":"url","url":"https://example.com/a.jpg"}},
				{"type":"document","title":"spec.pdf","source":{"type":"base64","media_type":"application/pdf","data":"JVBER"}},
				{"type":"document","source":{"type":"text","media_type":"text/plain","data":"plain words"}}]}]}`,
			want: `{"model":"gpt-4.1","messages":[{"role":"user","content":[
				{"type":"image_url","image_url":{"url":"https://example.com/a.jpg"}},
				{"type":"file","file":{"filename":"spec.pdf","file_data":"data:application/pdf;base64,JVBER"}},
				{"type":"text","text":"plain words"}]}],"max_completion_tokens":10}`,
		},
		{
			name: "named tool choice; stream asks for usage; structured output",
			in: `{"model":"c","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"x"}],
				"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"f"},
				"output_config":{"format":{"type":"json_schema","schema":{"type":"object","additionalProperties":false}}}}`,
			want: `{"model":"gpt-4.1","messages":[{"role":"user","content":"x"}],"max_completion_tokens":10,"stream":true,"stream_options":{"include_usage":true},
				"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
				"tool_choice":{"type":"function","function":{"name":"f"}},
				"response_format":{"type":"json_schema","json_schema":{"name":"response","schema":{"type":"object","additionalProperties":false},"strict":true}}}`,
		},
		{
			name:   "compatible servers get max_tokens and never store",
			target: Target{Kind: KindOpenAICompatible, UpstreamModel: "qwen3", ForceNoStore: true},
			in:     `{"model":"c","max_tokens":10,"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"auto"}}`,
			want:   `{"model":"qwen3","messages":[{"role":"user","content":"x"}],"max_tokens":10,"tool_choice":"auto"}`,
		},
		{
			name:   "Azure with store forced off",
			target: Target{Kind: KindAzureOpenAI, UpstreamModel: "dep", ForceNoStore: true},
			in:     `{"model":"c","max_tokens":10,"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"none"}}`,
			want:   `{"model":"dep","messages":[{"role":"user","content":"x"}],"max_completion_tokens":10,"tool_choice":"none","store":false}`,
			path:   "/openai/deployments/dep/chat/completions?api-version=2024-10-21",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := tt.target
			if target.Kind == "" {
				target = openAITarget
			}
			preq, err := TranslateRequest(AnthropicMessages, target, []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, preq.Body, []byte(tt.want)) {
				t.Fatalf("body:\n got %s\nwant %s", preq.Body, compactJSON(t, tt.want))
			}
			path := tt.path
			if path == "" {
				path = "/v1/chat/completions"
			}
			if preq.Path != path {
				t.Errorf("path %q, want %q", preq.Path, path)
			}
			if preq.Response.Stream != strings.Contains(tt.in, `"stream":true`) || preq.Response.IncludeUsage {
				t.Errorf("response options %+v", preq.Response)
			}
		})
	}
}

func TestAnthropicToOpenAIRequestErrors(t *testing.T) {
	tests := []struct{ name, in, code, param string }{
		{"not JSON", `{"model":"c",`, CodeInvalidJSON, ""},
		{"missing model", `{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}`, CodeMissingParameter, "model"},
		{"missing max_tokens", `{"model":"c","messages":[{"role":"user","content":"x"}]}`, CodeMissingParameter, "max_tokens"},
		{"max_tokens a string", `{"model":"c","max_tokens":"5","messages":[{"role":"user","content":"x"}]}`, CodeInvalidType, "max_tokens"},
		{"missing messages", `{"model":"c","max_tokens":1}`, CodeMissingParameter, "messages"},
		{"messages an object", `{"model":"c","max_tokens":1,"messages":{}}`, CodeInvalidType, "messages"},
		{"system role in messages", `{"model":"c","max_tokens":1,"messages":[{"role":"system","content":"x"}]}`, CodeInvalidValue, "messages.0.role"},
		{"content a number", `{"model":"c","max_tokens":1,"messages":[{"role":"user","content":7}]}`, CodeInvalidType, "messages.0.content"},
		{"unknown block", `{"model":"c","max_tokens":1,"messages":[{"role":"user","content":[{"type":"search_result","content":[]}]}]}`, CodeUnsupportedContent, "messages.0.content.0.type"},
		{"tool_use in a user turn", `{"model":"c","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]}]}`, CodeUnsupportedContent, "messages.0.content.0.type"},
		{"tool_result without id", `{"model":"c","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","content":"x"}]}]}`, CodeMissingParameter, "messages.0.content.0.tool_use_id"},
		{"image from the Files API", `{"model":"c","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}`, CodeUnsupportedContent, "messages.0.content.0.source.type"},
		{"server tool", `{"model":"c","max_tokens":1,"messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search_20250305","name":"web_search"}]}`, CodeUnsupportedParameter, "tools.0.type"},
		{"unknown tool_choice", `{"model":"c","max_tokens":1,"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"maybe"}}`, CodeInvalidValue, "tool_choice.type"},
		{"image in the system prompt", `{"model":"c","max_tokens":1,"system":[{"type":"image","source":{"type":"url","url":"https://x"}}],"messages":[{"role":"user","content":"x"}]}`, CodeUnsupportedContent, "system[0].type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertRequestError(t, AnthropicMessages, openAITarget, tt.in, tt.code, tt.param)
		})
	}
}

// messagesSummary is what an Anthropic client assembles from a Messages
// stream.
type messagesSummary struct {
	ID, Model  string
	Text       string
	Tools      []toolSummary
	StopReason string
	Usage      map[string]int64
	Stopped    bool
	Error      string
}

// summarizeMessagesStream parses a Messages event stream strictly: event
// names match data types, blocks open, take deltas and close in order.
func summarizeMessagesStream(t testing.TB, stream string) messagesSummary {
	t.Helper()
	evs, err := parseChunks(t, [][]byte{[]byte(stream)})
	if err != nil {
		t.Fatal(err)
	}
	var s messagesSummary
	open := -1
	next := 0
	kind := ""
	for i, ev := range evs {
		if !ev.HasData {
			continue
		}
		var e struct {
			Type    string `json:"type"`
			Index   int    `json:"index"`
			Message *struct {
				ID    string `json:"id"`
				Model string `json:"model"`
			} `json:"message"`
			ContentBlock *anthropicBlock `json:"content_block"`
			Delta        *struct {
				Type        string `json:"type"`
				Text        string `json:"text"`
				PartialJSON string `json:"partial_json"`
				StopReason  string `json:"stop_reason"`
			} `json:"delta"`
			Usage map[string]any `json:"usage"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
			t.Fatalf("event %d is not JSON: %v: %q", i, err, ev.Data)
		}
		if e.Type != ev.Name {
			t.Fatalf("event %d: name %q, type %q", i, ev.Name, e.Type)
		}
		if i == 0 && e.Type != "message_start" && e.Type != "error" {
			t.Fatalf("first event is %q", e.Type)
		}
		if s.Stopped {
			t.Fatalf("event after message_stop: %q", ev.Data)
		}
		switch e.Type {
		case "message_start":
			s.ID, s.Model = e.Message.ID, e.Message.Model
		case "content_block_start":
			if open >= 0 || e.Index != next {
				t.Fatalf("block %d starts while %d is open (next %d)", e.Index, open, next)
			}
			open, kind = e.Index, e.ContentBlock.Type
			next++
			if kind == "tool_use" {
				s.Tools = append(s.Tools, toolSummary{ID: e.ContentBlock.ID, Name: e.ContentBlock.Name})
			}
		case "content_block_delta":
			if e.Index != open {
				t.Fatalf("delta for block %d while %d is open", e.Index, open)
			}
			switch {
			case e.Delta.Type == "text_delta" && kind == "text":
				s.Text += e.Delta.Text
			case e.Delta.Type == "input_json_delta" && kind == "tool_use":
				s.Tools[len(s.Tools)-1].Args += e.Delta.PartialJSON
			case (e.Delta.Type == "thinking_delta" || e.Delta.Type == "signature_delta") && kind == "thinking":
			default:
				t.Fatalf("%s delta in a %s block", e.Delta.Type, kind)
			}
		case "content_block_stop":
			if e.Index != open {
				t.Fatalf("stop for block %d while %d is open", e.Index, open)
			}
			open = -1
		case "message_delta":
			if open >= 0 {
				t.Fatalf("message_delta with block %d open", open)
			}
			s.StopReason = e.Delta.StopReason
			s.Usage = map[string]int64{}
			for k, v := range e.Usage {
				if f, ok := v.(float64); ok {
					s.Usage[k] = int64(f)
				}
			}
		case "ping":
		case "message_stop":
			s.Stopped = true
		case "error":
			s.Error = e.Error.Message
		default:
			t.Fatalf("unknown event %q", e.Type)
		}
	}
	return s
}

func TestAnthropicToOpenAIResponse(t *testing.T) {
	tests := []struct {
		fixture string
		usage   Usage
		want    string
	}{
		{"openai/chat.json", Usage{InputTokens: 1250, OutputTokens: 160, CachedInputTokens: 1024, ReasoningTokens: 128},
			`{"id":"chatcmpl-TgChat0001","type":"message","role":"assistant","model":"gpt-4.1-mini-2025-04-14","content":[{"type":"text","text":"Paris."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":226,"cache_creation_input_tokens":0,"cache_read_input_tokens":1024,"output_tokens":160}}`},
		{"openai/chat_tool.json", Usage{InputTokens: 90, OutputTokens: 31},
			`{"id":"chatcmpl-TgTool0001","type":"message","role":"assistant","model":"gpt-4.1","content":[{"type":"tool_use","id":"call_TgWeather","name":"get_weather","input":{"city":"Nice"}},{"type":"tool_use","id":"call_TgCut","name":"get_time","input":{}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":90,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":31}}`},
		{"openai/chat_compat.json", Usage{InputTokens: 7, OutputTokens: 12, CachedInputTokens: 3, CacheWriteInputTokens: 2},
			`{"id":"cmpl-tg-compat","type":"message","role":"assistant","model":"llama-3.3-70b","content":[{"type":"text","text":"Hello there!"}],"stop_reason":"max_tokens","stop_sequence":null,"usage":{"input_tokens":2,"cache_creation_input_tokens":2,"cache_read_input_tokens":3,"output_tokens":12}}`},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			ex := exchange{api: AnthropicMessages, target: openAITarget, contentType: "application/json"}
			r := runSplits(t, ex, fixture(t, tt.fixture))
			if r.err != nil || r.out != tt.want {
				t.Fatalf("got %s (%v)\nwant %s", r.out, r.err, tt.want)
			}
			if r.usage != tt.usage {
				t.Errorf("usage = %+v, want %+v", r.usage, tt.usage)
			}
		})
	}
}

func TestAnthropicToOpenAIStream(t *testing.T) {
	tests := []struct {
		fixture string
		usage   Usage
		text    string
		tools   []toolSummary
		stop    string // "" when the stream does not finish
		errMsg  string
	}{
		{fixture: "openai/stream.sse", usage: Usage{InputTokens: 19, OutputTokens: 210, ReasoningTokens: 192}, text: "Hello world", stop: "end_turn"},
		{fixture: "openai/stream_tool.sse", usage: Usage{InputTokens: 88, OutputTokens: 40, CachedInputTokens: 64}, text: "Let me check.", stop: "tool_use",
			tools: []toolSummary{{ID: "call_TgA", Name: "get_weather", Args: `{"city":"Oslo"}`}, {ID: "call_TgB", Name: "get_time", Args: `{}`}}},
		{fixture: "openai/stream_compat.sse", usage: Usage{InputTokens: 5, OutputTokens: 2}, text: "Hi", stop: "end_turn"},
		{fixture: "openai/stream_groq.sse", usage: Usage{InputTokens: 12, OutputTokens: 3}, text: "Yo", stop: "end_turn"},
		{fixture: "openai/stream_error.sse", usage: Usage{InputTokens: 100, OutputTokens: tokens("Par"), Estimated: true}, text: "Par",
			errMsg: "The server had an error while processing your request."},
		{fixture: "openai/stream_cut.sse", usage: Usage{InputTokens: 100, OutputTokens: tokens("One two"), Estimated: true}, text: "One two"},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			ex := exchange{api: AnthropicMessages, target: openAITarget, opts: ResponseOptions{Stream: true, EstimatedInputTokens: 100}, contentType: "text/event-stream"}
			r := runSplits(t, ex, fixture(t, tt.fixture))
			if (tt.errMsg == "") != (r.err == nil) {
				t.Fatalf("err = %v", r.err)
			}
			if r.usage != tt.usage {
				t.Errorf("usage = %+v, want %+v", r.usage, tt.usage)
			}
			s := summarizeMessagesStream(t, r.out)
			if s.Text != tt.text || s.StopReason != tt.stop || s.Stopped != (tt.stop != "") || s.Error != tt.errMsg {
				t.Errorf("summary %+v", s)
			}
			if len(s.Tools) != len(tt.tools) {
				t.Fatalf("tools %+v, want %+v", s.Tools, tt.tools)
			}
			for i := range tt.tools {
				if s.Tools[i] != tt.tools[i] {
					t.Errorf("tool %d = %+v, want %+v", i, s.Tools[i], tt.tools[i])
				}
			}
			if tt.stop != "" {
				u := tt.usage
				want := map[string]int64{"input_tokens": u.InputTokens - u.CachedInputTokens - u.CacheWriteInputTokens,
					"cache_read_input_tokens": u.CachedInputTokens, "cache_creation_input_tokens": u.CacheWriteInputTokens, "output_tokens": u.OutputTokens}
				for k, v := range want {
					if s.Usage[k] != v {
						t.Errorf("message_delta usage %v, want %v", s.Usage, want)
						break
					}
				}
			}
			golden(t, "anthropic_openai/"+strings.TrimSuffix(strings.TrimPrefix(tt.fixture, "openai/"), ".sse")+".sse", []byte(r.out))
		})
	}
}

func TestAnthropicToOpenAIErrors(t *testing.T) {
	ex := exchange{api: AnthropicMessages, target: openAITarget, status: 401, contentType: "application/json"}
	r := runSplits(t, ex, fixture(t, "openai/error_invalid_api_key.json"))
	want := `{"type":"error","error":{"type":"authentication_error","message":"Incorrect API key provided: sk-proj-****abcd. You can find your API key at https://platform.openai.com/account/api-keys."}}`
	if r.out != want || r.err != nil {
		t.Fatalf("got %s (%v)\nwant %s", r.out, r.err, want)
	}
}
