package translate

import (
	"encoding/json"
	"testing"
)

func TestAnthropicPassthroughRequest(t *testing.T) {
	in := `{"model":"claude","max_tokens":1024,"system":[{"type":"text","text":"S","cache_control":{"type":"ephemeral"}}],` +
		`"messages":[{"role":"user","content":"Hi"}],"thinking":{"type":"enabled","budget_tokens":2048},"x_future":1e2,"stream":true}`
	preq, err := TranslateRequest(AnthropicMessages, Target{Kind: KindAnthropic, UpstreamModel: "claude-opus-4-5", BasePath: "/anthropic"}, []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"claude-opus-4-5","max_tokens":1024,"system":[{"type":"text","text":"S","cache_control":{"type":"ephemeral"}}],` +
		`"messages":[{"role":"user","content":"Hi"}],"thinking":{"type":"enabled","budget_tokens":2048},"x_future":1e2,"stream":true}`
	if string(preq.Body) != want {
		t.Fatalf("body:\n got %s\nwant %s", preq.Body, want)
	}
	if preq.Path != "/anthropic/v1/messages" || !preq.Response.Stream {
		t.Errorf("path %q, options %+v", preq.Path, preq.Response)
	}
	if len(preq.Headers) != 1 || preq.Headers[0] != (Header{Name: "anthropic-version", Value: "2023-06-01", IfAbsent: true}) {
		t.Errorf("headers %+v: want anthropic-version only where the client sent none", preq.Headers)
	}
}

func TestAnthropicPassthroughRequestErrors(t *testing.T) {
	target := Target{Kind: KindAnthropic, UpstreamModel: "c"}
	tests := []struct{ name, in, code, param string }{
		{"not JSON", `{`, CodeInvalidJSON, ""},
		{"missing model", `{"max_tokens":1,"messages":[]}`, CodeMissingParameter, "model"},
		{"duplicate model", `{"model":"a","model":"b"}`, CodeInvalidValue, "model"},
		{"stream a number", `{"model":"a","stream":1}`, CodeInvalidType, "stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertRequestError(t, AnthropicMessages, target, tt.in, tt.code, tt.param)
			_, err := TranslateRequest(AnthropicMessages, target, []byte(tt.in))
			e, ok := errorAs[*Error](err)
			if !ok {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			var body struct {
				Type  string `json:"type"`
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(e.Body(AnthropicMessages), &body); err != nil {
				t.Fatal(err)
			}
			want := e.Message
			if e.Param != "" {
				want = e.Param + ": " + want
			}
			if body.Type != "error" || body.Error.Type != "invalid_request_error" || body.Error.Message != want {
				t.Errorf("Anthropic error body %s", e.Body(AnthropicMessages))
			}
		})
	}
}

func TestAnthropicPassthroughResponse(t *testing.T) {
	tests := []struct {
		fixture string
		stream  bool
		usage   Usage
		errType string
	}{
		{fixture: "anthropic/message_text.json", usage: Usage{InputTokens: 39, OutputTokens: 9, CachedInputTokens: 11, CacheWriteInputTokens: 7}},
		{fixture: "anthropic/message_tool.json", usage: Usage{InputTokens: 412, OutputTokens: 77}},
		{fixture: "anthropic/stream_text.sse", stream: true, usage: Usage{InputTokens: 37, OutputTokens: 14, CachedInputTokens: 8, CacheWriteInputTokens: 4}},
		{fixture: "anthropic/stream_tool.sse", stream: true, usage: Usage{InputTokens: 380, OutputTokens: 58}},
		{fixture: "anthropic/stream_thinking.sse", stream: true, usage: Usage{InputTokens: 52, OutputTokens: 97}},
		{fixture: "anthropic/stream_delta_usage.sse", stream: true, usage: Usage{InputTokens: 19500, OutputTokens: 31, CachedInputTokens: 18000}},
		{fixture: "anthropic/stream_error.sse", stream: true, usage: Usage{InputTokens: 40, OutputTokens: tokens("Partial"), Estimated: true}, errType: "overloaded_error"},
		{fixture: "anthropic/stream_cut.sse", stream: true, usage: Usage{InputTokens: 40, OutputTokens: tokens("This answer was cut off in the middle of a long sentence about"), Estimated: true}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			ct := "application/json"
			if tt.stream {
				ct = "text/event-stream"
			}
			ex := exchange{api: AnthropicMessages, target: Target{Kind: KindAnthropic, UpstreamModel: "c"}, opts: ResponseOptions{Stream: tt.stream}, contentType: ct}
			in := fixture(t, tt.fixture)
			r := runSplits(t, ex, in)
			if r.out != string(in) || r.clientCT != ct {
				t.Errorf("passthrough changed the body or content type (%q):\n got %q\nwant %q", r.clientCT, r.out, in)
			}
			if r.usage != tt.usage {
				t.Errorf("usage = %+v, want %+v", r.usage, tt.usage)
			}
			if tt.errType == "" && r.err != nil {
				t.Errorf("err = %v", r.err)
			}
			if tt.errType != "" {
				if se, ok := errorAs[*StreamError](r.err); !ok || se.Type != tt.errType {
					t.Errorf("err = %v, want StreamError %q", r.err, tt.errType)
				}
			}
		})
	}
}

func TestAnthropicPassthroughErrors(t *testing.T) {
	tests := []struct {
		fixture string
		status  int
		want    string
	}{
		{"anthropic/error_overloaded.json", 529, ""},
		{"openai/error_html.txt", 502, `{"type":"error","error":{"type":"api_error","message":"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			in := fixture(t, tt.fixture)
			want := tt.want
			if want == "" {
				want = string(in)
			}
			ex := exchange{api: AnthropicMessages, target: Target{Kind: KindAnthropic, UpstreamModel: "c"}, status: tt.status}
			r := runSplits(t, ex, in)
			if r.out != want || r.err != nil {
				t.Fatalf("got %s (%v)\nwant %s", r.out, r.err, want)
			}
		})
	}
}

// As for OpenAI passthrough: an event Tollgate cannot read reaches the client
// as sent, without an error, and later events are still read.
func TestAnthropicPassthroughUnreadableEvent(t *testing.T) {
	in := fixture(t, "anthropic/stream_text.sse")
	body := append([]byte("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\n\n"), in...)
	ex := exchange{api: AnthropicMessages, target: Target{Kind: KindAnthropic, UpstreamModel: "c"}, opts: ResponseOptions{Stream: true}, contentType: "text/event-stream"}
	r := runSplits(t, ex, body)
	if r.err != nil || r.out != string(body) {
		t.Fatalf("err = %v, output changed:\n got %q\nwant %q", r.err, r.out, body)
	}
	if want := (Usage{InputTokens: 37, OutputTokens: 14, CachedInputTokens: 8, CacheWriteInputTokens: 4}); r.usage != want {
		t.Fatalf("usage = %+v, want %+v", r.usage, want)
	}
}
