package translate

import (
	"net/http"
	"strings"
	"testing"
)

func TestOpenAIPassthroughRequest(t *testing.T) {
	openai := Target{Kind: KindOpenAI, UpstreamModel: "gpt-4.1-mini-2025-04-14"}
	tests := []struct {
		name         string
		api          ClientAPI
		target       Target
		in           string
		want         string
		path         string
		stream       bool
		includeUsage bool
	}{
		{
			name: "only model changes; spacing, key order, number spelling and unknown fields survive",
			api:  OpenAIChat, target: openai,
			in:   "{ \"messages\" : [{\"role\":\"user\",\"content\":\"caf\\u00e9 <b>\"}],\n  \"model\":\"smart\", \"x_future\": {\"n\": 1.50e3, \"deep\": [null, true]}, \"temperature\": 0.70 }",
			want: "{ \"messages\" : [{\"role\":\"user\",\"content\":\"caf\\u00e9 <b>\"}],\n  \"model\":\"gpt-4.1-mini-2025-04-14\", \"x_future\": {\"n\": 1.50e3, \"deep\": [null, true]}, \"temperature\": 0.70 }",
			path: "/v1/chat/completions",
		},
		{
			name: "a model key written with an escape is still the model",
			api:  OpenAIChat, target: openai,
			in:   `{"mod\u0065l":"smart","messages":[]}`,
			want: `{"mod\u0065l":"gpt-4.1-mini-2025-04-14","messages":[]}`,
			path: "/v1/chat/completions",
		},
		{
			name: "stream without stream_options: include_usage is added",
			api:  OpenAIChat, target: openai,
			in:   `{"model":"m","stream":true,"messages":[]}`,
			want: `{"model":"gpt-4.1-mini-2025-04-14","stream":true,"messages":[],"stream_options":{"include_usage":true}}`,
			path: "/v1/chat/completions", stream: true,
		},
		{
			name: "stream with include_usage false: set to true, the client's choice remembered",
			api:  OpenAIChat, target: openai,
			in:   `{"model":"m","stream":true,"stream_options":{"include_usage":false,"include_obfuscation":false},"messages":[]}`,
			want: `{"model":"gpt-4.1-mini-2025-04-14","stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false},"messages":[]}`,
			path: "/v1/chat/completions", stream: true,
		},
		{
			name: "stream with include_usage true: unchanged",
			api:  OpenAIChat, target: openai,
			in:   `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}`,
			want: `{"model":"gpt-4.1-mini-2025-04-14","stream":true,"stream_options":{"include_usage":true},"messages":[]}`,
			path: "/v1/chat/completions", stream: true, includeUsage: true,
		},
		{
			name: "stream with empty stream_options",
			api:  OpenAIChat, target: openai,
			in:   `{"model":"m","stream":true,"stream_options":{ },"messages":[]}`,
			want: `{"model":"gpt-4.1-mini-2025-04-14","stream":true,"stream_options":{ "include_usage":true},"messages":[]}`,
			path: "/v1/chat/completions", stream: true,
		},
		{
			name: "stream with null stream_options",
			api:  OpenAIChat, target: openai,
			in:   `{"model":"m","stream":true,"stream_options":null,"messages":[]}`,
			want: `{"model":"gpt-4.1-mini-2025-04-14","stream":true,"stream_options":{"include_usage":true},"messages":[]}`,
			path: "/v1/chat/completions", stream: true,
		},
		{
			name: "no stream: stream_options left alone",
			api:  OpenAIChat, target: openai,
			in:   `{"model":"m","stream":false,"messages":[]}`,
			want: `{"model":"gpt-4.1-mini-2025-04-14","stream":false,"messages":[]}`,
			path: "/v1/chat/completions",
		},
		{
			name: "ForceNoStore adds store:false",
			api:  OpenAIChat, target: Target{Kind: KindOpenAI, UpstreamModel: "g", ForceNoStore: true},
			in:   `{"model":"m","messages":[]}`,
			want: `{"model":"g","messages":[],"store":false}`,
			path: "/v1/chat/completions",
		},
		{
			name: "ForceNoStore overrides store:true",
			api:  OpenAIChat, target: Target{Kind: KindOpenAI, UpstreamModel: "g", ForceNoStore: true},
			in:   `{"store":true,"model":"m","messages":[]}`,
			want: `{"store":false,"model":"g","messages":[]}`,
			path: "/v1/chat/completions",
		},
		{
			name: "without ForceNoStore the client's store stays",
			api:  OpenAIChat, target: Target{Kind: KindOpenAI, UpstreamModel: "g"},
			in:   `{"store":true,"model":"m","messages":[]}`,
			want: `{"store":true,"model":"g","messages":[]}`,
			path: "/v1/chat/completions",
		},
		{
			name: "ForceNoStore is not sent to compatible servers, which do not know store",
			api:  OpenAIChat, target: Target{Kind: KindOpenAICompatible, UpstreamModel: "llama-3.3-70b-versatile", BasePath: "/openai", ForceNoStore: true},
			in:   `{"model":"m","messages":[]}`,
			want: `{"model":"llama-3.3-70b-versatile","messages":[]}`,
			path: "/openai/v1/chat/completions",
		},
		{
			name: "Azure: deployment in the path, default api-version, store and include_usage",
			api:  OpenAIChat, target: Target{Kind: KindAzureOpenAI, UpstreamModel: "prod gpt4o", ForceNoStore: true},
			in:   `{"model":"m","stream":true,"messages":[]}`,
			want: `{"model":"prod gpt4o","stream":true,"messages":[],"stream_options":{"include_usage":true},"store":false}`,
			path: "/openai/deployments/prod%20gpt4o/chat/completions?api-version=2024-10-21", stream: true,
		},
		{
			name: "Azure with a chosen api-version",
			api:  OpenAIChat, target: Target{Kind: KindAzureOpenAI, UpstreamModel: "d", APIVersion: "2025-04-01-preview"},
			in:   `{"model":"m","messages":[]}`,
			want: `{"model":"d","messages":[]}`,
			path: "/openai/deployments/d/chat/completions?api-version=2025-04-01-preview",
		},
		{
			name: "Azure v1 API",
			api:  OpenAIChat, target: Target{Kind: KindAzureOpenAI, UpstreamModel: "d", APIVersion: "v1"},
			in:   `{"model":"m","messages":[]}`,
			want: `{"model":"d","messages":[]}`,
			path: "/openai/v1/chat/completions",
		},
		{
			name: "developer role becomes system for compatible servers, byte-exact elsewhere",
			api:  OpenAIChat, target: Target{Kind: KindOpenAICompatible, UpstreamModel: "qwen3"},
			in:   `{"model":"m","messages":[{"role":"developer","content":"Be brief; role \"developer\""},{"content":"hi", "role" : "user"},{ "role":"developer","content":[{"type":"text","text":"x"}]}]}`,
			want: `{"model":"qwen3","messages":[{"role":"system","content":"Be brief; role \"developer\""},{"content":"hi", "role" : "user"},{ "role":"system","content":[{"type":"text","text":"x"}]}]}`,
			path: "/v1/chat/completions",
		},
		{
			name: "developer role becomes system for Azure API versions before 2024-12-01-preview",
			api:  OpenAIChat, target: Target{Kind: KindAzureOpenAI, UpstreamModel: "d"},
			in:   `{"model":"m","messages":[{"role":"developer","content":"x"}]}`,
			want: `{"model":"d","messages":[{"role":"system","content":"x"}]}`,
			path: "/openai/deployments/d/chat/completions?api-version=2024-10-21",
		},
		{
			name: "developer role kept for OpenAI and newer Azure versions",
			api:  OpenAIChat, target: Target{Kind: KindAzureOpenAI, UpstreamModel: "d", APIVersion: "2025-04-01-preview"},
			in:   `{"model":"m","messages":[{"role":"developer","content":"x"}]}`,
			want: `{"model":"d","messages":[{"role":"developer","content":"x"}]}`,
			path: "/openai/deployments/d/chat/completions?api-version=2025-04-01-preview",
		},
		{
			name: "embeddings: model only, never store or stream options",
			api:  OpenAIEmbeddings, target: Target{Kind: KindOpenAI, UpstreamModel: "text-embedding-3-small", ForceNoStore: true},
			in:   `{"model":"emb","input":["a","b"],"stream":true}`,
			want: `{"model":"text-embedding-3-small","input":["a","b"],"stream":true}`,
			path: "/v1/embeddings",
		},
		{
			name: "Azure embeddings",
			api:  OpenAIEmbeddings, target: Target{Kind: KindAzureOpenAI, UpstreamModel: "emb-dep"},
			in:   `{"model":"emb","input":"a"}`,
			want: `{"model":"emb-dep","input":"a"}`,
			path: "/openai/deployments/emb-dep/embeddings?api-version=2024-10-21",
		},
		{
			name: "responses: store forced off, stream passed without stream_options",
			api:  OpenAIResponses, target: Target{Kind: KindOpenAI, UpstreamModel: "gpt-5-mini", ForceNoStore: true},
			in:   `{"model":"m","input":"hi","stream":true}`,
			want: `{"model":"gpt-5-mini","input":"hi","stream":true,"store":false}`,
			path: "/v1/responses", stream: true,
		},
		{
			name: "Azure responses use the v1 API unless a version is given",
			api:  OpenAIResponses, target: Target{Kind: KindAzureOpenAI, UpstreamModel: "d"},
			in:   `{"model":"m","input":"hi"}`,
			want: `{"model":"d","input":"hi"}`,
			path: "/openai/v1/responses",
		},
		{
			name: "Azure responses with a preview version",
			api:  OpenAIResponses, target: Target{Kind: KindAzureOpenAI, UpstreamModel: "d", APIVersion: "2025-03-01-preview"},
			in:   `{"model":"m","input":"hi"}`,
			want: `{"model":"d","input":"hi"}`,
			path: "/openai/responses?api-version=2025-03-01-preview",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			preq, err := TranslateRequest(tt.api, tt.target, []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(preq.Body) != tt.want {
				t.Fatalf("body:\n got %s\nwant %s", preq.Body, tt.want)
			}
			if preq.Path != tt.path || preq.Method != http.MethodPost || len(preq.Headers) != 0 {
				t.Errorf("%s %s %v, want POST %s", preq.Method, preq.Path, preq.Headers, tt.path)
			}
			if preq.Response.Stream != tt.stream || preq.Response.IncludeUsage != tt.includeUsage {
				t.Errorf("response options %+v, want stream %v includeUsage %v", preq.Response, tt.stream, tt.includeUsage)
			}
			if !jsonEqual(t, preq.Body, preq.Body) {
				t.Fatal("unreachable")
			}
		})
	}
}

func TestOpenAIPassthroughRequestErrors(t *testing.T) {
	target := Target{Kind: KindOpenAI, UpstreamModel: "g"}
	tests := []struct {
		name, in, code, param string
	}{
		{"not JSON", `{"model":"m",`, CodeInvalidJSON, ""},
		{"a JSON string", `"hello"`, CodeInvalidJSON, ""},
		{"empty body", ``, CodeInvalidJSON, ""},
		{"missing model", `{"messages":[]}`, CodeMissingParameter, "model"},
		{"null model", `{"model":null}`, CodeMissingParameter, "model"},
		{"empty model", `{"model":""}`, CodeMissingParameter, "model"},
		{"model an array", `{"model":["a"]}`, CodeInvalidType, "model"},
		{"duplicate model", `{"model":"cheap","messages":[],"model":"expensive"}`, CodeInvalidValue, "model"},
		{"duplicate model, one escaped", `{"model":"cheap","m\u006fdel":"expensive"}`, CodeInvalidValue, "model"},
		{"duplicate stream", `{"model":"m","stream":false,"stream":true}`, CodeInvalidValue, "stream"},
		{"stream a string", `{"model":"m","stream":"true"}`, CodeInvalidType, "stream"},
		{"stream_options a string", `{"model":"m","stream":true,"stream_options":"usage"}`, CodeInvalidType, "stream_options"},
		{"include_usage a string", `{"model":"m","stream":true,"stream_options":{"include_usage":"yes"}}`, CodeInvalidType, "stream_options.include_usage"},
		{"duplicate include_usage", `{"model":"m","stream":true,"stream_options":{"include_usage":false,"include_usage":true}}`, CodeInvalidValue, "stream_options.include_usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertRequestError(t, OpenAIChat, target, tt.in, tt.code, tt.param)
		})
	}
}

// With provider storage forbidden, a Responses request that continues
// stored state is refused with a reason instead of the provider's 404;
// without the ban, or with the members null, it passes.
func TestStoredStateWithStorageForbidden(t *testing.T) {
	noStore := Target{Kind: KindOpenAI, UpstreamModel: "g", ForceNoStore: true}
	assertRequestError(t, OpenAIResponses, noStore, `{"model":"m","input":"more","previous_response_id":"resp_1"}`, CodeUnsupportedParameter, "previous_response_id")
	assertRequestError(t, OpenAIResponses, Target{Kind: KindAzureOpenAI, UpstreamModel: "d", ForceNoStore: true},
		`{"model":"m","input":"more","conversation":"conv_1"}`, CodeUnsupportedParameter, "conversation")
	for _, c := range []struct {
		target Target
		body   string
	}{
		{Target{Kind: KindOpenAI, UpstreamModel: "g"}, `{"model":"m","input":"more","previous_response_id":"resp_1"}`},
		{noStore, `{"model":"m","input":"more","previous_response_id":null}`},
		{Target{Kind: KindOpenAICompatible, UpstreamModel: "g", ForceNoStore: true}, `{"model":"m","input":"more","previous_response_id":"resp_1"}`},
	} {
		if _, err := TranslateRequest(OpenAIResponses, c.target, []byte(c.body)); err != nil {
			t.Errorf("%+v %s: %v", c.target, c.body, err)
		}
	}
}

func TestOpenAIPassthroughResponse(t *testing.T) {
	tests := []struct {
		name         string
		api          ClientAPI
		fixture      string
		stream       bool
		includeUsage bool
		usage        Usage
		// dropUsageChunk: the output is the input without its usage-only chunk.
		dropUsageChunk bool
		errType        string
	}{
		{name: "chat", api: OpenAIChat, fixture: "openai/chat.json",
			usage: Usage{InputTokens: 1250, OutputTokens: 160, CachedInputTokens: 1024, ReasoningTokens: 128}},
		{name: "chat with tool calls", api: OpenAIChat, fixture: "openai/chat_tool.json", usage: Usage{InputTokens: 90, OutputTokens: 31}},
		{name: "compatible server: usage first, cache writes", api: OpenAIChat, fixture: "openai/chat_compat.json",
			usage: Usage{InputTokens: 7, OutputTokens: 12, CachedInputTokens: 3, CacheWriteInputTokens: 2}},
		{name: "no usage: estimated from the text", api: OpenAIChat, fixture: "openai/chat_no_usage.json",
			usage: Usage{InputTokens: 100, OutputTokens: tokens("0123456789abcdef0123456789abcdef0123456789"), Estimated: true}},
		{name: "embeddings", api: OpenAIEmbeddings, fixture: "openai/embeddings.json", usage: Usage{InputTokens: 13}},
		{name: "responses", api: OpenAIResponses, fixture: "openai/responses.json",
			usage: Usage{InputTokens: 2048, OutputTokens: 300, CachedInputTokens: 1536, ReasoningTokens: 256}},
		{name: "stream, client asked for usage", api: OpenAIChat, fixture: "openai/stream.sse", stream: true, includeUsage: true,
			usage: Usage{InputTokens: 19, OutputTokens: 210, ReasoningTokens: 192}},
		{name: "stream, usage chunk removed for a client that did not ask", api: OpenAIChat, fixture: "openai/stream.sse", stream: true,
			usage: Usage{InputTokens: 19, OutputTokens: 210, ReasoningTokens: 192}, dropUsageChunk: true},
		{name: "tool stream, usage chunk removed", api: OpenAIChat, fixture: "openai/stream_tool.sse", stream: true,
			usage: Usage{InputTokens: 88, OutputTokens: 40, CachedInputTokens: 64}, dropUsageChunk: true},
		{name: "compatible stream with usage on the finish chunk keeps it", api: OpenAIChat, fixture: "openai/stream_compat.sse", stream: true,
			usage: Usage{InputTokens: 5, OutputTokens: 2}},
		{name: "groq usage in x_groq", api: OpenAIChat, fixture: "openai/stream_groq.sse", stream: true,
			usage: Usage{InputTokens: 12, OutputTokens: 3}},
		{name: "error chunk mid-stream", api: OpenAIChat, fixture: "openai/stream_error.sse", stream: true,
			usage: Usage{InputTokens: 100, OutputTokens: tokens("Par"), Estimated: true}, errType: "server_error"},
		{name: "stream cut before usage: estimated from the text streamed", api: OpenAIChat, fixture: "openai/stream_cut.sse", stream: true,
			usage: Usage{InputTokens: 100, OutputTokens: tokens("One two"), Estimated: true}},
		{name: "responses stream", api: OpenAIResponses, fixture: "openai/responses_stream.sse", stream: true,
			usage: Usage{InputTokens: 40, OutputTokens: 70, ReasoningTokens: 64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := "application/json"
			if tt.stream {
				ct = "text/event-stream; charset=utf-8"
			}
			ex := exchange{api: tt.api, target: Target{Kind: KindOpenAI, UpstreamModel: "g"},
				opts: ResponseOptions{Stream: tt.stream, IncludeUsage: tt.includeUsage, EstimatedInputTokens: 100}, contentType: ct}
			in := fixture(t, tt.fixture)
			r := runSplits(t, ex, in)
			if r.clientCT != ct {
				t.Errorf("content type %q, want the provider's %q", r.clientCT, ct)
			}
			want := string(in)
			if tt.dropUsageChunk {
				var kept []string
				for _, ev := range strings.SplitAfter(want, "\n\n") {
					if !strings.Contains(ev, `"choices":[],"usage":{`) {
						kept = append(kept, ev)
					}
				}
				want = strings.Join(kept, "")
				if want == string(in) {
					t.Fatal("fixture has no usage-only chunk")
				}
			}
			if r.out != want {
				t.Errorf("output:\n got %q\nwant %q", r.out, want)
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

// A non-stream passthrough body reaches the client chunk by chunk, not at
// the end.
func TestOpenAIPassthroughForwardsBodyAtOnce(t *testing.T) {
	ex := exchange{api: OpenAIChat, target: Target{Kind: KindOpenAI, UpstreamModel: "g"}, contentType: "application/json"}
	body := fixture(t, "openai/chat.json")
	r := run(t, ex, [][]byte{body[:100], body[100:]})
	if r.chunksOut[0] != string(body[:100]) {
		t.Fatalf("first chunk out = %q, want it forwarded unchanged", r.chunksOut[0])
	}
	if r.usage.InputTokens != 1250 {
		t.Fatalf("usage %+v", r.usage)
	}
}

func TestOpenAIPassthroughErrors(t *testing.T) {
	tests := []struct {
		name    string
		kind    ProviderKind
		fixture string
		status  int
		want    string
	}{
		{"OpenAI error unchanged", KindOpenAI, "openai/error_invalid_api_key.json", 401, ""},
		{"HTML from a proxy wrapped", KindOpenAICompatible, "openai/error_html.txt", 502,
			`{"error":{"message":"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>","type":"server_error","param":null,"code":null}}`},
		{"FastAPI detail wrapped", KindOpenAICompatible, "openai/error_detail.json", 404,
			`{"error":{"message":"Model llama-9 not found","type":"not_found_error","param":null,"code":null}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := fixture(t, tt.fixture)
			want := tt.want
			if want == "" {
				want = string(in)
			}
			ex := exchange{api: OpenAIChat, target: Target{Kind: tt.kind, UpstreamModel: "g"}, status: tt.status, contentType: "text/html"}
			r := runSplits(t, ex, in)
			if r.out != want || r.err != nil || r.clientCT != "application/json" {
				t.Fatalf("got %s (%v, %q)\nwant %s", r.out, r.err, r.clientCT, want)
			}
		})
	}
}

// Passthrough does not judge what the provider sends: a 200 body or a stream
// event Tollgate cannot read reaches the client byte for byte, without an
// error (which would end the client's stream), and only the usage it might
// have carried becomes an estimate. Events after an unreadable one are still
// read.
func TestOpenAIPassthroughUnreadable(t *testing.T) {
	const (
		good     = `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}` + "\n\n"
		cut      = `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"th` + "\n\n"
		broken   = `data: {"id":"c" "choices":[]}` + "\n\n"
		usage    = `data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":7,"total_tokens":26}}` + "\n\n"
		done     = "data: [DONE]\n\n"
		estimate = 100
	)
	tests := []struct {
		name   string
		api    ClientAPI
		stream bool
		body   string
		usage  Usage
	}{
		{name: "chat body that is not JSON", api: OpenAIChat, body: "<html>oops</html>",
			usage: Usage{InputTokens: estimate, Estimated: true}},
		{name: "chat body cut short", api: OpenAIChat, body: `{"id":"c","choices":[{"message":{"content":"Hi"}}],"usage":{"prompt_tokens":19`,
			usage: Usage{InputTokens: estimate, Estimated: true}},
		{name: "embeddings body that is not JSON", api: OpenAIEmbeddings, body: "oops",
			usage: Usage{InputTokens: estimate, Estimated: true}},
		{name: "responses body that is not JSON", api: OpenAIResponses, body: "oops",
			usage: Usage{InputTokens: estimate, Estimated: true}},
		{name: "unreadable events mid-stream, usage after them", api: OpenAIChat, stream: true, body: good + cut + broken + good + usage + done,
			usage: Usage{InputTokens: 19, OutputTokens: 7}},
		{name: "unreadable last event, no usage", api: OpenAIChat, stream: true, body: good + good + cut,
			usage: Usage{InputTokens: estimate, OutputTokens: tokens("HiHi"), Estimated: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := "application/json"
			if tt.stream {
				ct = "text/event-stream"
			}
			ex := exchange{api: tt.api, target: Target{Kind: KindOpenAICompatible, UpstreamModel: "g"},
				opts: ResponseOptions{Stream: tt.stream, IncludeUsage: true, EstimatedInputTokens: estimate}, contentType: ct}
			r := runSplits(t, ex, []byte(tt.body))
			if r.err != nil {
				t.Errorf("err = %v, want none", r.err)
			}
			if r.out != tt.body {
				t.Errorf("output:\n got %q\nwant %q", r.out, tt.body)
			}
			if r.usage != tt.usage {
				t.Errorf("usage = %+v, want %+v", r.usage, tt.usage)
			}
		})
	}
}
