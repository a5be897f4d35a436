package translate

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

var anthropicTarget = Target{Kind: KindAnthropic, UpstreamModel: "claude-sonnet-4-5"}

func TestOpenAIToAnthropicRequest(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{
			name: "minimal: default max_tokens, model replaced",
			in:   `{"model":"smart","messages":[{"role":"user","content":"Hi"}]}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}]}`,
		},
		{
			name: "system and developer messages become the system prompt, in order",
			in: `{"model":"m","messages":[
				{"role":"system","content":"Be brief."},
				{"role":"developer","content":[{"type":"text","text":"Answer in French."}]},
				{"role":"user","content":"Capital of Italy?"},
				{"role":"system","content":"Late instruction."}]}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,
				"system":[{"type":"text","text":"Be brief."},{"type":"text","text":"Answer in French."},{"type":"text","text":"Late instruction."}],
				"messages":[{"role":"user","content":[{"type":"text","text":"Capital of Italy?"}]}]}`,
		},
		{
			name: "multi-turn with consecutive user messages merged",
			in: `{"model":"m","messages":[
				{"role":"user","content":"One."},{"role":"user","content":"Two."},
				{"role":"assistant","content":"Noted."},
				{"role":"user","content":"Three."}]}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[
				{"role":"user","content":[{"type":"text","text":"One."},{"type":"text","text":"Two."}]},
				{"role":"assistant","content":[{"type":"text","text":"Noted."}]},
				{"role":"user","content":[{"type":"text","text":"Three."}]}]}`,
		},
		{
			name: "tools, tool calls and tool results",
			in: `{"model":"m","messages":[
				{"role":"user","content":"Weather in Paris and the time?"},
				{"role":"assistant","content":null,"tool_calls":[
					{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
					{"id":"call_2","type":"function","function":{"name":"get_time","arguments":""}}]},
				{"role":"tool","tool_call_id":"call_1","content":"18C"},
				{"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"12:00"}]},
				{"role":"user","content":"Thanks; and tomorrow?"}],
				"tools":[
					{"type":"function","function":{"name":"get_weather","description":"Weather now","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
					{"type":"function","function":{"name":"get_time"}}],
				"tool_choice":"auto"}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[
				{"role":"user","content":[{"type":"text","text":"Weather in Paris and the time?"}]},
				{"role":"assistant","content":[
					{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},
					{"type":"tool_use","id":"call_2","name":"get_time","input":{}}]},
				{"role":"user","content":[
					{"type":"tool_result","tool_use_id":"call_1","content":[{"type":"text","text":"18C"}]},
					{"type":"tool_result","tool_use_id":"call_2","content":[{"type":"text","text":"12:00"}]},
					{"type":"text","text":"Thanks; and tomorrow?"}]}],
				"tools":[
					{"name":"get_weather","description":"Weather now","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},
					{"name":"get_time","input_schema":{"type":"object","properties":{}}}],
				"tool_choice":{"type":"auto"}}`,
		},
		{
			name: "tool results are moved before user text in the same turn",
			in: `{"model":"m","messages":[
				{"role":"assistant","content":"Calling.","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},
				{"role":"user","content":"While you wait: hello."},
				{"role":"tool","tool_call_id":"c","content":"done"}]}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[
				{"role":"assistant","content":[{"type":"text","text":"Calling."},{"type":"tool_use","id":"c","name":"f","input":{}}]},
				{"role":"user","content":[
					{"type":"tool_result","tool_use_id":"c","content":[{"type":"text","text":"done"}]},
					{"type":"text","text":"While you wait: hello."}]}]}`,
		},
		{
			name: "an empty tool result has no content block",
			in: `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},
				{"role":"tool","tool_call_id":"c","content":""}]}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[
				{"role":"assistant","content":[{"type":"tool_use","id":"c","name":"f","input":{}}]},
				{"role":"user","content":[{"type":"tool_result","tool_use_id":"c"}]}]}`,
		},
		{
			name: "tool_choice required, named function, none; parallel_tool_calls false",
			in: `{"model":"m","messages":[{"role":"user","content":"x"}],
				"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
				"tool_choice":{"type":"function","function":{"name":"f"}},"parallel_tool_calls":false}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
				"tools":[{"name":"f","input_schema":{"type":"object"}}],
				"tool_choice":{"type":"tool","name":"f","disable_parallel_tool_use":true}}`,
		},
		{
			name: "tool_choice required becomes any",
			in: `{"model":"m","messages":[{"role":"user","content":"x"}],
				"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required"}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
				"tools":[{"name":"f","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"any"}}`,
		},
		{
			name: "tool_choice none",
			in: `{"model":"m","messages":[{"role":"user","content":"x"}],
				"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"none"}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
				"tools":[{"name":"f","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"none"}}`,
		},
		{
			name: "images: data URL to base64, https URL to url source; PDF file to document",
			in: `{"model":"m","messages":[{"role":"user","content":[
				{"type":"text","text":"Compare"},
				{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"high"}},
				{"type":"image_url","image_url":{"url":"https://example.com/cat.jpg"}},
				{"type":"file","file":{"filename":"a.pdf","file_data":"data:application/pdf;base64,JVBERi0x"}}]}]}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[
				{"type":"text","text":"Compare"},
				{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
				{"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}},
				{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0x"},"title":"a.pdf"}]}]}`,
		},
		{
			name: "cache_control on parts is kept",
			in: `{"model":"m","messages":[
				{"role":"system","content":[{"type":"text","text":"Long manual","cache_control":{"type":"ephemeral"}}]},
				{"role":"user","content":[{"type":"text","text":"Q","cache_control":{"type":"ephemeral","ttl":"1h"}}]}]}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,
				"system":[{"type":"text","text":"Long manual","cache_control":{"type":"ephemeral"}}],
				"messages":[{"role":"user","content":[{"type":"text","text":"Q","cache_control":{"type":"ephemeral","ttl":"1h"}}]}]}`,
		},
		{
			name: "max_completion_tokens wins over max_tokens; stop string; sampling; user; stream",
			in: `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":50,"max_completion_tokens":70,
				"stop":"END","temperature":0.2,"top_p":0.9,"user":"u-42","stream":true,"stream_options":{"include_usage":true},
				"seed":7,"presence_penalty":0.5,"frequency_penalty":0.5}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":70,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
				"stop_sequences":["END"],"temperature":0.2,"top_p":0.9,"stream":true,"metadata":{"user_id":"u-42"}}`,
		},
		{
			name: "max_tokens alone; stop array; temperature above 1 clamped",
			in:   `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":50,"stop":["a","b"],"temperature":1.7}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":50,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
				"stop_sequences":["a","b"],"temperature":1}`,
		},
		{
			name: "json_schema response format becomes output_config.format",
			in: `{"model":"m","messages":[{"role":"user","content":"x"}],
				"response_format":{"type":"json_schema","json_schema":{"name":"r","strict":true,"schema":{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false}}}}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
				"output_config":{"format":{"type":"json_schema","schema":{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false}}}}`,
		},
		{
			name: "json_object response format asks in the system prompt",
			in:   `{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,
				"system":[{"type":"text","text":"S"},{"type":"text","text":"Respond with a single valid JSON object and nothing else."}],
				"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`,
		},
		{
			name: "reasoning_effort enables thinking, raises the default max_tokens and drops sampling",
			in:   `{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"medium","temperature":0.3}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":12288,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
				"thinking":{"type":"enabled","budget_tokens":8192}}`,
		},
		{
			name: "reasoning_effort with a small max_completion_tokens fits the budget below it",
			in:   `{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"high","max_completion_tokens":3000}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":3000,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
				"thinking":{"type":"enabled","budget_tokens":2999}}`,
		},
		{
			name: "empty messages and empty text parts are dropped",
			in: `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":""},{"type":"text","text":"x"}]},
				{"role":"assistant","content":""},{"role":"user","content":"y"}]}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"text","text":"y"}]}]}`,
		},
		{
			name: "assistant refusal parts and a prefill",
			in:   `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"refusal","refusal":"No."},{"type":"text","text":"{\"a\":"}]}]}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]},
				{"role":"assistant","content":[{"type":"text","text":"No."},{"type":"text","text":"{\"a\":"}]}]}`,
		},
		{
			name: "unicode and HTML characters survive unescaped",
			in:   `{"model":"m","messages":[{"role":"user","content":"<b>café</b> & 😀 \u2028"}]}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"<b>café</b> & 😀 \u2028"}]}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			preq, err := TranslateRequest(OpenAIChat, anthropicTarget, []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, preq.Body, []byte(tt.want)) {
				t.Fatalf("body:\n got %s\nwant %s", preq.Body, compactJSON(t, tt.want))
			}
			if preq.Method != http.MethodPost || preq.Path != "/v1/messages" {
				t.Fatalf("%s %s, want POST /v1/messages", preq.Method, preq.Path)
			}
			if len(preq.Headers) != 1 || preq.Headers[0] != (Header{Name: "anthropic-version", Value: "2023-06-01"}) {
				t.Fatalf("headers = %+v", preq.Headers)
			}
		})
	}
}

func compactJSON(t testing.TB, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad want JSON: %v", err)
	}
	b, _ := marshal(v)
	return string(b)
}

func TestOpenAIToAnthropicRequestOptions(t *testing.T) {
	preq, err := TranslateRequest(OpenAIChat, Target{Kind: KindAnthropic, UpstreamModel: "c", BasePath: "/proxy/", APIVersion: "2024-01-01", DefaultMaxTokens: 1000},
		[]byte(`{"model":"m","messages":[{"role":"user","content":"hello there"}],"stream":true,"stream_options":{"include_usage":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	if preq.Path != "/proxy/v1/messages" {
		t.Errorf("path = %q", preq.Path)
	}
	if preq.Headers[0].Value != "2024-01-01" {
		t.Errorf("anthropic-version = %q, want the target's APIVersion", preq.Headers[0].Value)
	}
	if !strings.Contains(string(preq.Body), `"max_tokens":1000`) {
		t.Errorf("body %s: want the target's default max_tokens", preq.Body)
	}
	if !preq.Response.Stream || !preq.Response.IncludeUsage {
		t.Errorf("response options = %+v", preq.Response)
	}
	// No answer yet: the usage is the estimate of the request's input, one
	// user message of two tokens with its overheads (3 + "user" + 3).
	if u := NewResponseTranslator(OpenAIChat, anthropicTarget, preq.Response).Usage(); u != (Usage{InputTokens: 3 + 1 + 2 + 3, Estimated: true}) {
		t.Errorf("usage before any answer = %+v, want the request's estimate", u)
	}
}

// requestErrorCases are bad OpenAI chat requests that every translating
// provider refuses the same way.
var requestErrorCases = []struct {
	name, in, code, param string
}{
	{"not JSON", `{"model":`, CodeInvalidJSON, ""},
	{"not an object", `[1,2]`, CodeInvalidJSON, ""},
	{"trailing garbage", `{"model":"m","messages":[]} x`, CodeInvalidJSON, ""},
	{"duplicate model", `{"model":"a","model":"b","messages":[{"role":"user","content":"x"}]}`, CodeInvalidValue, "model"},
	{"missing model", `{"messages":[{"role":"user","content":"x"}]}`, CodeMissingParameter, "model"},
	{"model not a string", `{"model":5,"messages":[{"role":"user","content":"x"}]}`, CodeInvalidType, "model"},
	{"missing messages", `{"model":"m"}`, CodeMissingParameter, "messages"},
	{"messages not an array", `{"model":"m","messages":"hi"}`, CodeInvalidType, "messages"},
	{"empty messages", `{"model":"m","messages":[]}`, CodeMissingParameter, "messages"},
	{"message without role", `{"model":"m","messages":[{"content":"x"}]}`, CodeMissingParameter, "messages[0].role"},
	{"unknown role", `{"model":"m","messages":[{"role":"robot","content":"x"}]}`, CodeInvalidValue, "messages[0].role"},
	{"function role", `{"model":"m","messages":[{"role":"function","name":"f","content":"x"}]}`, CodeUnsupportedParameter, "messages[0].role"},
	{"role not a string", `{"model":"m","messages":[{"role":1,"content":"x"}]}`, CodeInvalidType, "messages[0].role"},
	{"content a number", `{"model":"m","messages":[{"role":"user","content":5}]}`, CodeInvalidType, "messages[0].content"},
	{"user message without content", `{"model":"m","messages":[{"role":"user"}]}`, CodeMissingParameter, "messages[0].content"},
	{"unknown part type", `{"model":"m","messages":[{"role":"user","content":[{"type":"video","video":{}}]}]}`, CodeUnsupportedContent, "messages[0].content[0].type"},
	{"part without type", `{"model":"m","messages":[{"role":"user","content":[{"text":"x"}]}]}`, CodeMissingParameter, "messages[0].content[0].type"},
	{"part text not a string", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":3}]}]}`, CodeInvalidType, "messages[0].content[0].text"},
	{"image part without url", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}`, CodeMissingParameter, "messages[0].content[0].image_url.url"},
	{"image URL neither http nor data", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]}`, CodeInvalidValue, "messages[0].content[0].image_url.url"},
	{"image part in a system message", `{"model":"m","messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`, CodeUnsupportedContent, "messages[0].content"},
	{"tool message without tool_call_id", `{"model":"m","messages":[{"role":"tool","content":"x"}]}`, CodeMissingParameter, "messages[0].tool_call_id"},
	{"tool call without id", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]}]}`, CodeMissingParameter, "messages[0].tool_calls[0].id"},
	{"tool call without name", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"arguments":"{}"}}]}]}`, CodeMissingParameter, "messages[0].tool_calls[0].function.name"},
	{"tool call arguments not JSON", `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\": \"Par"}}]}]}`, CodeInvalidValue, "messages[1].tool_calls[0].function.arguments"},
	{"tool of another type", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search"}]}`, CodeUnsupportedParameter, "tools[0].type"},
	{"tool without name", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{}}]}`, CodeMissingParameter, "tools[0].function.name"},
	{"tool parameters not an object", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":"x"}}]}`, CodeInvalidType, "tools[0].function.parameters"},
	{"unknown tool_choice", `{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"sometimes"}`, CodeInvalidValue, "tool_choice"},
	{"allowed_tools tool_choice", `{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"allowed_tools","allowed_tools":{}}}`, CodeUnsupportedParameter, "tool_choice"},
	{"legacy functions", `{"model":"m","messages":[{"role":"user","content":"x"}],"functions":[{"name":"f"}]}`, CodeUnsupportedParameter, "functions"},
	{"temperature out of range", `{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}`, CodeInvalidValue, "temperature"},
	{"temperature a string", `{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}`, CodeInvalidType, "temperature"},
	{"top_p out of range", `{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":1.5}`, CodeInvalidValue, "top_p"},
	{"max_tokens zero", `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}`, CodeInvalidValue, "max_tokens"},
	{"max_completion_tokens a string", `{"model":"m","messages":[{"role":"user","content":"x"}],"max_completion_tokens":"9"}`, CodeInvalidType, "max_completion_tokens"},
	{"n zero", `{"model":"m","messages":[{"role":"user","content":"x"}],"n":0}`, CodeInvalidValue, "n"},
	{"stop a number", `{"model":"m","messages":[{"role":"user","content":"x"}],"stop":5}`, CodeInvalidType, "stop"},
	{"stream a string", `{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}`, CodeInvalidType, "stream"},
	{"unknown response_format", `{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"yaml"}}`, CodeInvalidValue, "response_format.type"},
	{"json_schema without schema", `{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"x"}}}`, CodeMissingParameter, "response_format.json_schema.schema"},
	{"audio output", `{"model":"m","messages":[{"role":"user","content":"x"}],"modalities":["text","audio"]}`, CodeUnsupportedParameter, "modalities"},
	{"unknown reasoning_effort", `{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"extreme"}`, CodeInvalidValue, "reasoning_effort"},
	{"file by id", `{"model":"m","messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-abc"}}]}]}`, CodeUnsupportedContent, "messages[0].content[0].file.file_id"},
}

func TestOpenAIToAnthropicRequestErrors(t *testing.T) {
	cases := slices.Concat(requestErrorCases, []struct{ name, in, code, param string }{
		{"n above 1", `{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}`, CodeUnsupportedParameter, "n"},
		{"logprobs", `{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true}`, CodeUnsupportedParameter, "logprobs"},
		{"audio input", `{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"UklGRg==","format":"wav"}}]}]}`, CodeUnsupportedContent, "messages[0].content[0].type"},
		{"TIFF image", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/tiff;base64,AAAA"}}]}]}`, CodeUnsupportedContent, "messages[0].content[0].image_url.url"},
		{"text file", `{"model":"m","messages":[{"role":"user","content":[{"type":"file","file":{"file_data":"data:text/plain;base64,aGk="}}]}]}`, CodeUnsupportedContent, "messages[0].content[0].file.file_data"},
		{"only empty content", `{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":""}]}`, CodeMissingParameter, "messages"},
		{"thinking budget cannot fit", `{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"low","max_tokens":500}`, CodeInvalidValue, "max_completion_tokens"},
	})
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			assertRequestError(t, OpenAIChat, anthropicTarget, tt.in, tt.code, tt.param)
		})
	}
}

// assertRequestError checks that TranslateRequest refuses the body with an
// *Error of the given code and param, whose client body is well formed.
func assertRequestError(t *testing.T, api ClientAPI, target Target, in, code, param string) {
	t.Helper()
	_, err := TranslateRequest(api, target, []byte(in))
	e, ok := errorAs[*Error](err)
	if !ok {
		t.Fatalf("err = %v (%T), want *Error", err, err)
	}
	if e.Code != code || e.Param != param || e.Status != 400 {
		t.Fatalf("got status %d code %q param %q (%s); want 400 %q %q", e.Status, e.Code, e.Param, e.Message, code, param)
	}
	if e.Message == "" || !strings.HasSuffix(e.Message, ".") {
		t.Fatalf("message %q should be a sentence saying what to fix", e.Message)
	}
	var body struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(e.Body(OpenAIChat), &body); err != nil || body.Error.Type != "invalid_request_error" || body.Error.Message != e.Message {
		t.Fatalf("client body %s: %v", e.Body(OpenAIChat), err)
	}
}

func TestOpenAIToAnthropicResponse(t *testing.T) {
	tests := []struct {
		fixture string
		usage   Usage
		check   func(t *testing.T, cc chatCompletion)
	}{
		{"anthropic/message_text.json", Usage{InputTokens: 39, OutputTokens: 9, CachedInputTokens: 11, CacheWriteInputTokens: 7}, func(t *testing.T, cc chatCompletion) {
			if got := *cc.Choices[0].Message.Content; got != "Paris is the capital of France." {
				t.Errorf("content = %q", got)
			}
			if cc.Choices[0].FinishReason != "stop" {
				t.Errorf("finish_reason = %q", cc.Choices[0].FinishReason)
			}
		}},
		{"anthropic/message_tool.json", Usage{InputTokens: 412, OutputTokens: 77}, func(t *testing.T, cc chatCompletion) {
			m := cc.Choices[0].Message
			if cc.Choices[0].FinishReason != "tool_calls" || len(m.ToolCalls) != 2 {
				t.Fatalf("finish %q, %d tool calls", cc.Choices[0].FinishReason, len(m.ToolCalls))
			}
			if m.ToolCalls[0].Function.Arguments != `{"city":"Paris","unit":"celsius"}` || m.ToolCalls[1].Function.Arguments != `{}` {
				t.Errorf("arguments %q, %q", m.ToolCalls[0].Function.Arguments, m.ToolCalls[1].Function.Arguments)
			}
			if m.ToolCalls[0].ID != "toolu_01TgWeatherParis" || m.ToolCalls[0].Type != "function" {
				t.Errorf("tool call %+v", m.ToolCalls[0])
			}
		}},
		{"anthropic/message_thinking.json", Usage{InputTokens: 35, OutputTokens: 120, CachedInputTokens: 3, CacheWriteInputTokens: 2}, func(t *testing.T, cc chatCompletion) {
			m := cc.Choices[0].Message
			if *m.Content != "Yes." || m.ReasoningContent != "The user wants a short answer." || cc.Choices[0].FinishReason != "length" {
				t.Errorf("message %+v finish %q", m, cc.Choices[0].FinishReason)
			}
		}},
		{"anthropic/message_stop_sequence.json", Usage{InputTokens: 12, OutputTokens: 6}, func(t *testing.T, cc chatCompletion) {
			if cc.Choices[0].FinishReason != "stop" {
				t.Errorf("finish_reason = %q", cc.Choices[0].FinishReason)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			ex := exchange{api: OpenAIChat, target: anthropicTarget, opts: ResponseOptions{Created: 1700000000, RequestID: "req1"}, contentType: "application/json"}
			r := runSplits(t, ex, fixture(t, tt.fixture))
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.clientCT != "application/json" {
				t.Errorf("content type %q", r.clientCT)
			}
			if r.usage != tt.usage {
				t.Errorf("usage = %+v, want %+v", r.usage, tt.usage)
			}
			var cc chatCompletion
			if err := json.Unmarshal([]byte(r.out), &cc); err != nil {
				t.Fatal(err)
			}
			if cc.Object != "chat.completion" || cc.Created != 1700000000 || len(cc.Choices) != 1 {
				t.Fatalf("completion %s", r.out)
			}
			var u openAIUsage
			_ = json.Unmarshal(cc.Usage, &u)
			if got := u.usage(); got.InputTokens != tt.usage.InputTokens || got.OutputTokens != tt.usage.OutputTokens || got.CachedInputTokens != tt.usage.CachedInputTokens {
				t.Errorf("client usage %s, want %+v", cc.Usage, tt.usage)
			}
			tt.check(t, cc)
			golden(t, "openai_anthropic/"+strings.TrimSuffix(strings.TrimPrefix(tt.fixture, "anthropic/"), ".json")+".json", []byte(r.out))
		})
	}
}

func TestOpenAIToAnthropicStream(t *testing.T) {
	tests := []struct {
		fixture   string
		usage     Usage
		errType   string // StreamError type expected
		content   string
		reasoning string
		tools     []toolSummary
		finish    string // "" when the stream does not finish
	}{
		{fixture: "anthropic/stream_text.sse", usage: Usage{InputTokens: 37, OutputTokens: 14, CachedInputTokens: 8, CacheWriteInputTokens: 4},
			content: "Bonjour à tous, \"amis\"\n<ok> & 😀 done.", finish: "stop"},
		{fixture: "anthropic/stream_tool.sse", usage: Usage{InputTokens: 380, OutputTokens: 58},
			content: "Checking.", finish: "tool_calls",
			tools: []toolSummary{{ID: "toolu_01TgStreamWeather", Name: "get_weather", Args: `{"city": "Paris"}`}, {ID: "toolu_01TgStreamClock", Name: "get_time", Args: "{}"}}},
		{fixture: "anthropic/stream_thinking.sse", usage: Usage{InputTokens: 52, OutputTokens: 97},
			content: "Yes.", reasoning: "Short question, short answer.", finish: "stop"},
		{fixture: "anthropic/stream_server_tool.sse", usage: Usage{InputTokens: 900, OutputTokens: 40},
			content: "It is a gateway.", finish: "stop"},
		{fixture: "anthropic/stream_delta_usage.sse", usage: Usage{InputTokens: 19500, OutputTokens: 31, CachedInputTokens: 18000},
			content: "ok", finish: "stop"},
		{fixture: "anthropic/stream_error.sse", usage: Usage{InputTokens: 40, OutputTokens: tokens("Partial"), Estimated: true},
			errType: "overloaded_error", content: "Partial"},
		{fixture: "anthropic/stream_cut.sse", usage: Usage{InputTokens: 40, OutputTokens: tokens("This answer was cut off in the middle of a long sentence about"), Estimated: true},
			content: "This answer was cut off in the middle of a long sentence about"},
	}
	for _, tt := range tests {
		for _, includeUsage := range []bool{false, true} {
			name := strings.TrimSuffix(strings.TrimPrefix(tt.fixture, "anthropic/"), ".sse")
			if includeUsage {
				name += "+usage"
			}
			t.Run(name, func(t *testing.T) {
				ex := exchange{api: OpenAIChat, target: anthropicTarget, opts: ResponseOptions{Stream: true, IncludeUsage: includeUsage, Created: 1700000000}, contentType: "text/event-stream; charset=utf-8"}
				r := runSplits(t, ex, fixture(t, tt.fixture))
				if r.clientCT != "text/event-stream" {
					t.Errorf("content type %q", r.clientCT)
				}
				if tt.errType == "" && r.err != nil {
					t.Fatal(r.err)
				}
				if tt.errType != "" {
					se, ok := errorAs[*StreamError](r.err)
					if !ok || se.Type != tt.errType {
						t.Fatalf("err = %v, want a StreamError %q", r.err, tt.errType)
					}
				}
				if r.usage != tt.usage {
					t.Errorf("usage = %+v, want %+v", r.usage, tt.usage)
				}
				s := summarizeChatStream(t, r.out)
				if s.Content[0] != tt.content || s.Reasoning[0] != tt.reasoning {
					t.Errorf("content %q reasoning %q", s.Content[0], s.Reasoning[0])
				}
				if len(tt.tools) > 0 || len(s.Tools[0]) > 0 {
					if len(s.Tools[0]) != len(tt.tools) {
						t.Fatalf("tools %+v, want %+v", s.Tools[0], tt.tools)
					}
					for i := range tt.tools {
						if s.Tools[0][i] != tt.tools[i] {
							t.Errorf("tool %d = %+v, want %+v", i, s.Tools[0][i], tt.tools[i])
						}
					}
				}
				if s.Finish[0] != tt.finish {
					t.Errorf("finish = %q, want %q", s.Finish[0], tt.finish)
				}
				finished := tt.finish != ""
				if s.Done != finished {
					t.Errorf("[DONE] sent = %v, want %v", s.Done, finished)
				}
				switch {
				case includeUsage && finished:
					if s.Usage == nil || s.Usage.PromptTokens != tt.usage.InputTokens || s.Usage.CompletionTokens != tt.usage.OutputTokens {
						t.Errorf("usage chunk %+v, want %+v", s.Usage, tt.usage)
					}
				case s.Usage != nil:
					t.Errorf("usage chunk sent though the client did not ask (or the stream did not finish)")
				}
				if tt.errType != "" && s.Error == "" {
					t.Errorf("the error did not reach the client")
				}
				golden(t, "openai_anthropic/"+strings.ReplaceAll(name, "+", "_")+".sse", []byte(r.out))
			})
		}
	}
}

func TestOpenAIToAnthropicErrors(t *testing.T) {
	tests := []struct {
		fixture string
		status  int
		want    string
	}{
		{"anthropic/error_invalid_request.json", 400, `{"error":{"message":"max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-5","type":"invalid_request_error","param":null,"code":"invalid_request_error"}}`},
		{"anthropic/error_overloaded.json", 529, `{"error":{"message":"Overloaded","type":"server_error","param":null,"code":"overloaded_error"}}`},
		{"openai/error_html.txt", 502, `{"error":{"message":"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>","type":"server_error","param":null,"code":null}}`},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			for _, stream := range []bool{false, true} {
				ex := exchange{api: OpenAIChat, target: anthropicTarget, opts: ResponseOptions{Stream: stream}, status: tt.status, contentType: "application/json"}
				r := runSplits(t, ex, fixture(t, tt.fixture))
				if r.err != nil || r.out != tt.want || r.clientCT != "application/json" {
					t.Fatalf("got %s (%v, %q)\nwant %s", r.out, r.err, r.clientCT, tt.want)
				}
				if r.usage != (Usage{}) {
					t.Errorf("usage of a refused request = %+v, want zero", r.usage)
				}
			}
		})
	}
}
