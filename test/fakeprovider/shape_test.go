package fakeprovider

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// shape is what a client's parser depends on in an answer: the event names
// in order (consecutive repeats collapsed, keep-alive pings left out) and,
// per event name, every JSON key path ("choices[].delta.content").
type shape struct {
	events []string
	keys   map[string]bool // "event|path"
}

// opaque keys hold data rather than format (tool arguments): their
// insides are not compared.
var opaque = map[string]bool{"args": true, "input": true}

func shapeOf(t *testing.T, body []byte, stream bool) shape {
	t.Helper()
	s := shape{keys: map[string]bool{}}
	add := func(event string, raw []byte) {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("event %q is not JSON: %v\n%s", event, err, raw)
		}
		var walk func(path string, v any)
		walk = func(path string, v any) {
			switch x := v.(type) {
			case map[string]any:
				for k, e := range x {
					p := strings.TrimPrefix(path+"."+k, ".")
					s.keys[event+"|"+p] = true
					if !opaque[k] {
						walk(p, e)
					}
				}
			case []any:
				for _, e := range x {
					walk(path+"[]", e)
				}
			}
		}
		walk("", v)
	}
	if !stream {
		add("", body)
		return s
	}
	for _, ev := range parseSSE(body) {
		name := ev.name
		if name == "" {
			name = "data"
		}
		if ev.data == "[DONE]" {
			name = "[DONE]"
		} else {
			add(name, []byte(ev.data))
		}
		if name != "ping" && (len(s.events) == 0 || s.events[len(s.events)-1] != name) {
			s.events = append(s.events, name)
		}
	}
	return s
}

// diff lists the key paths only in a and only in b, leaving out those that
// start with one of the allowed prefixes.
func diff(a, b map[string]bool, allowA, allowB []string) (onlyA, onlyB []string) {
	allowed := func(k string, prefixes []string) bool {
		return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(k, p) })
	}
	for k := range a {
		if !b[k] && !allowed(k, allowA) {
			onlyA = append(onlyA, k)
		}
	}
	for k := range b {
		if !a[k] && !allowed(k, allowB) {
			onlyB = append(onlyB, k)
		}
	}
	sort.Strings(onlyA)
	sort.Strings(onlyB)
	return onlyA, onlyB
}

type shapeCase struct {
	name    string
	kind    Kind
	opts    Options
	ask     func(t *testing.T, s *Server) reply
	stream  bool
	fixture string // in testdata/shapes

	// recording is a file of the shared provider recordings with the same
	// shape, when there is one; fakeOnly and recordingOnly are the key
	// paths ("event|path" prefixes) allowed to differ from it, each for a
	// reason given next to it.
	recording     string
	fakeOnly      []string
	recordingOnly []string
}

func chatShape(q chatReq, headers ...string) func(*testing.T, *Server) reply {
	return func(t *testing.T, s *Server) reply { return chat(t, s, q, headers...) }
}

func raw(method, path, body string, headers ...string) func(*testing.T, *Server) reply {
	return func(t *testing.T, s *Server) reply {
		h := credentials(s)
		for i := 0; i+1 < len(headers); i += 2 {
			h.Set(headers[i], headers[i+1])
		}
		return do(t, s, method, path, h, []byte(body))
	}
}

// badKey asks with a credential the fake does not accept.
func badKey(q chatReq) func(*testing.T, *Server) reply {
	return func(t *testing.T, s *Server) reply {
		path, body := q.build(s.Kind())
		h := credentials(s)
		for _, name := range []string{"Authorization", "Api-Key", "X-Api-Key", "X-Goog-Api-Key"} {
			if h.Get(name) != "" {
				h.Set(name, "sk-not-the-right-key-0000")
			}
		}
		return do(t, s, http.MethodPost, path, h, body)
	}
}

var weather = chatReq{user: "call get_weather for Oslo", tool: "get_weather"}

var shapeCases = []shapeCase{
	{name: "OpenAI chat", kind: OpenAI, ask: chatShape(hello), fixture: "openai_chat.json",
		recording: "openai/basic.json"},
	{name: "OpenAI chat tool call", kind: OpenAI, ask: chatShape(weather), fixture: "openai_chat_tool.json",
		// The recording is trimmed by hand; the live API sends these too.
		recording: "openai/tool_call.json", fakeOnly: []string{
			"|choices[].logprobs", "|choices[].message.refusal", "|choices[].message.annotations",
			"|usage.completion_tokens_details.accepted_prediction_tokens", "|usage.completion_tokens_details.rejected_prediction_tokens",
		}},
	{name: "OpenAI chat stream", kind: OpenAI, ask: chatShape(chatReq{user: "hi", stream: true}), stream: true,
		fixture: "openai_chat_stream.sse", recording: "openai/stream.json"},
	{name: "OpenAI chat stream tool call", kind: OpenAI, ask: chatShape(chatReq{user: "call get_weather", tool: "get_weather", stream: true}), stream: true,
		fixture: "openai_chat_stream_tool.sse",
		// The recording comes through an OpenAI-compatible server that
		// leaves out OpenAI's refusal, padding, service tier and usage
		// details.
		recording: "openai/stream_tool_empty_content.json", fakeOnly: []string{
			"data|choices[].delta.refusal", "data|obfuscation", "data|usage.prompt_tokens_details", "data|usage.completion_tokens_details",
		}},
	{name: "OpenAI embeddings", kind: OpenAI, fixture: "openai_embeddings.json", recording: "openai/embeddings.json",
		ask: raw(http.MethodPost, "/v1/embeddings", `{"model":"text-embedding-3-small","input":"hello there"}`)},
	{name: "OpenAI models", kind: OpenAI, fixture: "openai_models.json", ask: raw(http.MethodGet, "/v1/models", "")},
	{name: "OpenAI 401", kind: OpenAI, fixture: "openai_error_401.json", ask: badKey(hello)},
	{name: "OpenAI responses", kind: OpenAI, fixture: "openai_responses.json",
		ask: raw(http.MethodPost, "/v1/responses", `{"model":"gpt-4o","instructions":"be brief","input":"hello"}`)},
	{name: "OpenAI responses stream", kind: OpenAI, fixture: "openai_responses_stream.sse", stream: true,
		ask: raw(http.MethodPost, "/v1/responses", `{"model":"gpt-4o","instructions":"be brief","input":"hello","stream":true}`)},

	{name: "Azure chat", kind: AzureOpenAI, ask: chatShape(hello), fixture: "azure_chat.json"},
	{name: "Azure chat stream", kind: AzureOpenAI, stream: true, fixture: "azure_chat_stream.sse",
		ask: raw(http.MethodPost, "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", `{"stream":true,"messages":[{"role":"user","content":"hi"}]}`)},
	{name: "Azure 401", kind: AzureOpenAI, fixture: "azure_error_401.json", ask: badKey(hello)},

	{name: "Anthropic message", kind: Anthropic, ask: chatShape(hello), fixture: "anthropic_message.json",
		recording: "anthropic/thinking.json",
		// The recording is a reply with thinking.
		recordingOnly: []string{"|content[].thinking", "|content[].signature"}},
	{name: "Anthropic tool use", kind: Anthropic, ask: chatShape(weather), fixture: "anthropic_message_tool.json",
		// The recorded model wrote some text before its call; the recording
		// is trimmed by hand (no stop_sequence, no cache_creation breakdown).
		recording: "anthropic/tool.json", recordingOnly: []string{"|content[].text"},
		fakeOnly: []string{"|usage.cache_creation", "|stop_sequence"}},
	{name: "Anthropic stream", kind: Anthropic, ask: chatShape(chatReq{user: "hi", stream: true}), stream: true,
		fixture: "anthropic_stream.sse", recording: "anthropic/stream_basic.json"},
	{name: "Anthropic stream thinking", kind: Anthropic, ask: chatShape(chatReq{user: "hi", stream: true, reasoning: true}), stream: true,
		fixture: "anthropic_stream_thinking.sse", recording: "anthropic/stream_thinking.json"},
	{name: "Anthropic stream tool use", kind: Anthropic, ask: chatShape(chatReq{user: "call get_weather", tool: "get_weather", stream: true}), stream: true,
		fixture: "anthropic_stream_tool.sse",
		// The recording is hand-trimmed: no cache fields, no ping.
		recording: "anthropic/stream_tool.json", fakeOnly: []string{
			"message_start|message.usage.cache", "message_start|message.usage.service_tier", "message_delta|usage.cache", "ping|",
		}},
	{name: "Anthropic 529", kind: Anthropic, ask: chatShape(hello, HeaderError, "529"), fixture: "anthropic_error_529.json"},

	{name: "Gemini generate", kind: Gemini, ask: chatShape(hello), fixture: "gemini_generate.json",
		// The recording leaves out the per-modality breakdown.
		recording: "gemini/basic.json", fakeOnly: []string{"|usageMetadata.promptTokensDetails"}},
	{name: "Gemini thinking", kind: Gemini, ask: chatShape(chatReq{user: "hi", reasoning: true}), fixture: "gemini_generate_thinking.json",
		recording: "gemini/reasoning.json", fakeOnly: []string{"|usageMetadata.promptTokensDetails", "|responseId"}},
	{name: "Gemini stream", kind: Gemini, ask: chatShape(chatReq{user: "hi there", stream: true}), stream: true, fixture: "gemini_stream.sse"},
	{name: "Gemini stream tool call", kind: Gemini, ask: chatShape(chatReq{user: "call get_weather", tool: "get_weather", stream: true}), stream: true,
		fixture:   "gemini_stream_tool.sse",
		recording: "gemini/stream_tool.json", fakeOnly: []string{"data|usageMetadata.promptTokensDetails", "data|candidates[].index"}},
	{name: "Gemini bad key", kind: Gemini, fixture: "gemini_error_key.json", ask: badKey(hello)},
}

// recordingsDir is where the shared provider recordings are, or "" when
// this checkout has none (a user's clone): the fixtures are enough then.
func recordingsDir() string {
	dir := os.Getenv("TOLLGATE_PROVIDER_RECORDINGS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "provider-recordings")
	}
	if _, err := os.Stat(dir); err != nil {
		return ""
	}
	return dir
}

func TestAnswersHaveTheProvidersShape(t *testing.T) {
	recordings := recordingsDir()
	for _, tc := range shapeCases {
		t.Run(tc.name, func(t *testing.T) {
			s := startFake(t, tc.kind, tc.opts)
			r := tc.ask(t, s)
			if r.err != nil {
				t.Fatalf("reading the answer: %v", r.err)
			}
			got := shapeOf(t, r.body, tc.stream)

			want, err := os.ReadFile(filepath.Join("testdata", "shapes", tc.fixture))
			if err != nil {
				t.Fatal(err)
			}
			compareShapes(t, tc.fixture, got, shapeOf(t, want, tc.stream), nil, nil)

			if tc.recording == "" || recordings == "" {
				return
			}
			rec, err := os.ReadFile(filepath.Join(recordings, tc.recording))
			if err != nil {
				t.Fatal(err)
			}
			compareShapes(t, "recording "+tc.recording, got, shapeOf(t, rec, tc.stream), tc.fakeOnly, tc.recordingOnly)
		})
	}
}

func compareShapes(t *testing.T, what string, fake, want shape, fakeOnly, wantOnly []string) {
	t.Helper()
	if !slices.Equal(fake.events, want.events) {
		t.Errorf("%s: events\n fake %v\n want %v", what, fake.events, want.events)
	}
	onlyFake, onlyWant := diff(fake.keys, want.keys, fakeOnly, wantOnly)
	if len(onlyFake) > 0 {
		t.Errorf("%s: keys only in the fake's answer:\n  %s", what, strings.Join(onlyFake, "\n  "))
	}
	if len(onlyWant) > 0 {
		t.Errorf("%s: keys the fake's answer lacks:\n  %s", what, strings.Join(onlyWant, "\n  "))
	}
}
