package translate

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tollgate-dev/tollgate/extproc/tokencount"
)

// The messages of OpenAI's cookbook "How to count tokens with tiktoken"
// (section 6), for which the API reported 124 prompt tokens on gpt-4o and
// 129 on gpt-4-0613, and the tools example of its section 7: 101 on gpt-4o,
// 105 on gpt-4.
const (
	cookbookMessages = `{"model":"gpt-4o","messages":[
		{"role":"system","content":"You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
		{"role":"system","name":"example_user","content":"New synergies will help drive top-line growth."},
		{"role":"system","name":"example_assistant","content":"Things working well together will increase revenue."},
		{"role":"system","name":"example_user","content":"Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
		{"role":"system","name":"example_assistant","content":"Let's talk later when we're less busy about how to do better."},
		{"role":"user","content":"This late pivot means we don't have time to boil the ocean for the client deliverable."}]}`
	cookbookTools = `{"model":"gpt-4o","messages":[
		{"role":"system","content":"You are a helpful assistant that can answer to questions about the weather."},
		{"role":"user","content":"What's the weather like in San Francisco?"}],
		"tools":[{"type":"function","function":{"name":"get_current_weather","description":"Get the current weather in a given location",
			"parameters":{"type":"object","properties":{
				"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"},
				"unit":{"type":"string","description":"The unit of temperature to return","enum":["celsius","fahrenheit"]}},
			"required":["location"]}}}]}`
)

func TestInputEstimatePublished(t *testing.T) {
	tests := []struct {
		name          string
		body          string
		o200k, cl100k int64
	}{
		{"cookbook messages", cookbookMessages, 124, 129},
		{"cookbook tools", cookbookTools, 101, 105},
	}
	for _, tt := range tests {
		r := requestText{api: OpenAIChat, body: []byte(tt.body)}
		if got := countInput(tokencount.O200kBase, r); got != tt.o200k {
			t.Errorf("%s: o200k_base estimate %d, OpenAI counted %d", tt.name, got, tt.o200k)
		}
		if got := countInput(tokencount.Cl100kBase, r); got != tt.cl100k {
			t.Errorf("%s: cl100k_base estimate %d, OpenAI counted %d", tt.name, got, tt.cl100k)
		}
	}
}

// Each client API's request is counted from its text: per message 3 tokens
// and its role, the reply's 3, images at their fixed estimate.
func TestInputEstimate(t *testing.T) {
	const msg, reply = tokensPerMessage, tokensPerReply
	tk := tokens
	tests := []struct {
		name string
		api  ClientAPI
		body string
		want int64
	}{
		{"chat: text, developer role", OpenAIChat,
			`{"model":"m","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"hello there"}]}`,
			msg + tk("developer") + tk("Be brief.") + msg + tk("user") + tk("hello there") + reply},
		{"chat: text parts and images (low detail, and auto counted as high)", OpenAIChat,
			`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"What is in these?"},
				{"type":"image_url","image_url":{"url":"https://example.com/a.png","detail":"low"}},
				{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}`,
			msg + tk("user") + tk("What is in these?") + imageTokensLow + imageTokens + reply},
		{"chat: tool call and tool result", OpenAIChat,
			`{"model":"m","messages":[{"role":"user","content":"Weather in Oslo?"},
				{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},
				{"role":"tool","tool_call_id":"c1","content":"{\"temp\":3}"}]}`,
			msg + tk("user") + tk("Weather in Oslo?") + msg + tk("assistant") + tk("get_weather") + tk(`{"city":"Oslo"}`) +
				msg + tk("tool") + tk(`{"temp":3}`) + reply},
		{"chat: audio and file parts count as one image each", OpenAIChat,
			`{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}},{"type":"file","file":{"file_data":"data:application/pdf;base64,AAAA"}}]}]}`,
			msg + tk("user") + 2*imageTokens + reply},
		{"embeddings: one string", OpenAIEmbeddings, `{"model":"e","input":"hello world"}`, 2},
		{"embeddings: strings", OpenAIEmbeddings, `{"model":"e","input":["the first","and the second text"]}`,
			tk("the first") + tk("and the second text")},
		{"embeddings: token ids are tokens", OpenAIEmbeddings, `{"model":"e","input":[[1,2,3],[4,5]]}`, 5},
		{"embeddings: one list of token ids", OpenAIEmbeddings, `{"model":"e","input":[1,2,3]}`, 3},
		{"responses: instructions and a string input", OpenAIResponses, `{"model":"m","instructions":"Be brief.","input":"hello there"}`,
			msg + tk("developer") + tk("Be brief.") + msg + tk("user") + tk("hello there") + reply},
		{"responses: items", OpenAIResponses,
			`{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"Describe it."},{"type":"input_image","image_url":"https://x/y.png","detail":"high"}]},
				{"type":"function_call","call_id":"c1","name":"lookup","arguments":"{\"q\":\"it\"}"},
				{"type":"function_call_output","call_id":"c1","output":"It is a cat."},
				{"type":"reasoning","summary":[]}],
			"tools":[{"type":"function","name":"lookup","description":"Look it up.","parameters":{"type":"object","properties":{"q":{"type":"string"}}}},{"type":"web_search"}]}`,
			msg + tk("user") + tk("Describe it.") + imageTokens + tk("lookup") + tk(`{"q":"it"}`) + tk("It is a cat.") + reply +
				toolFuncInitO200k + tk("lookup:Look it up") + toolPropInit + toolPropKey + tk("q:string:") + toolFuncEnd},
		{"anthropic: system, text, image, tool use and result", AnthropicMessages,
			`{"model":"c","max_tokens":100,"system":[{"type":"text","text":"You are terse."}],"messages":[
				{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]},
				{"role":"assistant","content":[{"type":"thinking","thinking":"Hmm.","signature":"s"},{"type":"tool_use","id":"t1","name":"identify","input":{"x":1}}]},
				{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"A cat."}]},
					{"type":"document","source":{"type":"text","media_type":"text/plain","data":"Cats purr."}}]}]}`,
			msg + tk("system") + tk("You are terse.") + msg + tk("user") + tk("What is this?") + imageTokens +
				msg + tk("assistant") + tk("identify") + tk(`{"x":1}`) + msg + tk("user") + tk("A cat.") + tk("Cats purr.") + reply},
		{"anthropic: string system and content, custom tool", AnthropicMessages,
			`{"model":"c","max_tokens":100,"system":"Be kind.","messages":[{"role":"user","content":"hi"}],
				"tools":[{"name":"t","description":"A tool.","input_schema":{"type":"object","properties":{"a":{"type":"array","items":{"type":"string"}}}}}]}`,
			msg + tk("system") + tk("Be kind.") + msg + tk("user") + tk("hi") + reply +
				toolFuncInitO200k + tk("t:A tool") + toolPropInit + toolPropKey + tk("a:array:") + tk(`{"type":"string"}`) + toolFuncEnd},
		{"unreadable body: a token per four bytes", OpenAIChat, `{"messages":[{"role":"user","content":{}}]}`, (43 + 3) / 4},
		{"no body", OpenAIChat, ``, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := countInput(tokencount.O200kBase, requestText{api: tt.api, body: []byte(tt.body)}); got != tt.want {
				t.Errorf("estimate = %d, want %d", got, tt.want)
			}
		})
	}
}

// TranslateRequest keeps the request for the estimate, for every pair, and
// the translator counts it with the encoding of the upstream model.
func TestInputEstimateThroughTranslateRequest(t *testing.T) {
	chat := []byte(`{"model":"m","messages":[{"role":"user","content":"hello there"}]}`)
	for _, tc := range []struct {
		name   string
		api    ClientAPI
		target Target
		body   []byte
	}{
		{"openai passthrough", OpenAIChat, Target{Kind: KindOpenAI, UpstreamModel: "gpt-4o"}, chat},
		{"openai passthrough, gpt-4 counts in cl100k_base", OpenAIChat, Target{Kind: KindOpenAI, UpstreamModel: "gpt-4"}, chat},
		{"openai to anthropic", OpenAIChat, anthropicTarget, chat},
		{"openai to gemini", OpenAIChat, geminiTarget, chat},
		{"embeddings", OpenAIEmbeddings, Target{Kind: KindOpenAI, UpstreamModel: "text-embedding-3-small"}, []byte(`{"model":"e","input":"hello world"}`)},
		{"responses", OpenAIResponses, Target{Kind: KindOpenAI, UpstreamModel: "gpt-4.1"}, []byte(`{"model":"m","input":"hello there"}`)},
		{"anthropic passthrough", AnthropicMessages, Target{Kind: KindAnthropic, UpstreamModel: "claude"}, []byte(`{"model":"c","max_tokens":9,"messages":[{"role":"user","content":"hello there"}]}`)},
		{"anthropic to openai", AnthropicMessages, openAITarget, []byte(`{"model":"c","max_tokens":9,"messages":[{"role":"user","content":"hello there"}]}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			preq, err := TranslateRequest(tc.api, tc.target, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			want := countInput(tokencount.ForModel(tc.target.UpstreamModel), requestText{tc.api, tc.body})
			if want == 0 {
				t.Fatal("nothing counted")
			}
			if u := NewResponseTranslator(tc.api, tc.target, preq.Response).Usage(); u != (Usage{InputTokens: want, Estimated: true}) {
				t.Errorf("usage before any answer = %+v, want input %d", u, want)
			}
		})
	}
}

// A request with more text than maxCountedInput is sampled: the estimate
// stays close to the count, also when the text changes character on the way
// (prose, then denser tool output).
func TestInputEstimateLargePrompt(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var numbers strings.Builder
	for numbers.Len() < 300<<10 {
		fmt.Fprintf(&numbers, `{"id":%d,"temp":%.2f,"city":"Zürich"},`, r.IntN(1e6), r.Float64()*40)
	}
	many := make([]string, 4000) // many short texts, of multi-byte characters
	for i := range many {
		many[i] = "東京は大きい。" + strconv.Itoa(i)
	}
	for _, msgs := range [][]string{
		{randomText(r, 1<<20)},
		{randomText(r, 200<<10), numbers.String(), randomText(r, 50<<10)},
		many,
		{strings.Repeat("東京は日本の首都で、大きい都市です。", 6000)}, // no spaces to cut at
	} {
		var messages []map[string]string
		exact := int64(tokensPerReply)
		for _, m := range msgs {
			messages = append(messages, map[string]string{"role": "user", "content": m})
			exact += tokensPerMessage + tokens("user") + tokens(m)
		}
		body, _ := json.Marshal(map[string]any{"model": "m", "messages": messages})
		got := countInput(tokencount.O200kBase, requestText{OpenAIChat, body})
		diff := float64(got-exact) / float64(exact)
		t.Logf("%d bytes: estimate %d, count %d (%+.2f%%)", len(body), got, exact, 100*diff)
		if diff > 0.03 || diff < -0.03 {
			t.Errorf("estimate %d, exact count %d: off by %.1f%%", got, exact, 100*diff)
		}
	}
}

// streamPair is how one translator pair's provider streams a text delta.
type streamPair struct {
	name   string
	api    ClientAPI
	target Target
	start  string // events before the deltas
	delta  func(text string) string
}

func jsonString(s string) string { return string(appendJSONString(nil, s)) }

var streamPairs = []streamPair{
	{name: "openai passthrough", api: OpenAIChat, target: Target{Kind: KindOpenAI, UpstreamModel: "gpt-4.1"},
		delta: func(s string) string {
			return `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":` + jsonString(s) + `},"finish_reason":null}],"usage":null}` + "\n\n"
		}},
	{name: "responses passthrough", api: OpenAIResponses, target: Target{Kind: KindOpenAI, UpstreamModel: "gpt-4.1"},
		delta: func(s string) string {
			return "event: response.output_text.delta\n" + `data: {"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":` + jsonString(s) + "}\n\n"
		}},
	{name: "anthropic passthrough", api: AnthropicMessages, target: Target{Kind: KindAnthropic, UpstreamModel: "claude"},
		start: "event: message_start\n" + `data: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":"claude","content":[],"usage":{"input_tokens":40,"output_tokens":1}}}` + "\n\n",
		delta: func(s string) string {
			return "event: content_block_delta\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":` + jsonString(s) + "}}\n\n"
		}},
	{name: "anthropic to openai clients", api: OpenAIChat, target: anthropicTarget,
		start: "event: message_start\n" + `data: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":"claude","content":[],"usage":{"input_tokens":40,"output_tokens":1}}}` + "\n\n" +
			"event: content_block_start\n" + `data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n",
		delta: func(s string) string {
			return "event: content_block_delta\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":` + jsonString(s) + "}}\n\n"
		}},
	{name: "openai to anthropic clients", api: AnthropicMessages, target: openAITarget,
		delta: func(s string) string {
			return `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":` + jsonString(s) + `},"finish_reason":null}]}` + "\n\n"
		}},
	{name: "gemini to openai clients", api: OpenAIChat, target: geminiTarget,
		delta: func(s string) string {
			return `data: {"candidates":[{"content":{"parts":[{"text":` + jsonString(s) + `}],"role":"model"},"index":0}],"modelVersion":"gemini-2.5-flash"}` + "\r\n\r\n"
		}},
}

// randomText is generated-looking text: words, punctuation, newlines, JSON
// and characters that need escaping or several bytes.
func randomText(r *rand.Rand, n int) string {
	words := []string{"the", "gateway", "counts", "tokens", ",", ".", "\n", "\n\n", "\"quoted\"", "naïve", "東京", "😀", "func", "(x)", "{\"a\":1}", "\t", "2026", "back\\slash", "Hello"}
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 && r.IntN(4) > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.String()
}

// splitDeltas cuts text into deltas of 1 to 12 bytes, at character
// boundaries, as providers stream it.
func splitDeltas(r *rand.Rand, text string) []string {
	var out []string
	for text != "" {
		n := min(1+r.IntN(12), len(text))
		for n < len(text) && !utf8.RuneStart(text[n]) {
			n++
		}
		out = append(out, text[:n])
		text = text[n:]
	}
	return out
}

// batchedCount is the output estimate of deltas by the batching rule: a
// batch is tokenized when the next delta would take it past
// maxPendingOutput, and at the end.
func batchedCount(deltas []string) int64 {
	var n int64
	var batch strings.Builder
	for _, d := range deltas {
		if batch.Len()+len(d) > maxPendingOutput {
			n += tokens(batch.String())
			batch.Reset()
		}
		batch.WriteString(d)
	}
	return n + tokens(batch.String())
}

// A stream cut before the provider's usage report is estimated from the
// text it streamed: exactly the tokenizer's count of that text when it fits
// one batch, and the sum of the batches' counts beyond, for every pair.
func TestCutStreamOutputEstimate(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	short := randomText(r, 1500)
	long := randomText(r, 20<<10)
	shortDeltas, longDeltas := splitDeltas(r, short), splitDeltas(r, long)
	for _, p := range streamPairs {
		t.Run(p.name, func(t *testing.T) {
			ex := exchange{api: p.api, target: p.target, opts: ResponseOptions{Stream: true, EstimatedInputTokens: 1}, contentType: "text/event-stream"}
			build := func(deltas []string) []byte {
				var b strings.Builder
				b.WriteString(p.start)
				for _, d := range deltas {
					b.WriteString(p.delta(d))
				}
				return []byte(b.String())
			}

			got := runSplits(t, ex, build(shortDeltas)).usage
			if want := tokens(short); !got.Estimated || got.OutputTokens != want {
				t.Errorf("short stream: usage %+v, want an estimate of %d output tokens (the text's count)", got, want)
			}

			got = run(t, ex, [][]byte{build(longDeltas)}).usage
			want := batchedCount(longDeltas)
			if !got.Estimated || got.OutputTokens != want {
				t.Errorf("long stream: usage %+v, want an estimate of %d output tokens (its batches' counts)", got, want)
			}
			if whole := tokens(long); want < whole || float64(want-whole) > 0.01*float64(whole) {
				t.Errorf("batches count %d, the whole text %d", want, whole)
			}
		})
	}
}

// ext_proc reads the usage after every chunk, so that a cut stream's record
// has the text streamed up to the cut: each read counts the text added
// since the previous one.
func TestOutputEstimateReadAfterEveryChunk(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	deltas := splitDeltas(r, randomText(r, 3000))
	for _, p := range streamPairs {
		t.Run(p.name, func(t *testing.T) {
			rt := NewResponseTranslator(p.api, p.target, ResponseOptions{Stream: true, EstimatedInputTokens: 1})
			rt.Headers(200, "text/event-stream")
			if _, err := rt.Chunk([]byte(p.start), false); err != nil {
				t.Fatal(err)
			}
			var want int64
			for i, d := range deltas {
				if _, err := rt.Chunk([]byte(p.delta(d)), false); err != nil {
					t.Fatal(err)
				}
				want += tokens(d)
				if u := rt.Usage(); u.OutputTokens != max(want, 1) {
					t.Fatalf("after delta %d: output %d, want %d", i, u.OutputTokens, want)
				}
			}
		})
	}
}

// Memory per response stays bounded by the batch, however long the stream.
func TestOutputEstimateMemoryIsBounded(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, p := range streamPairs {
		t.Run(p.name, func(t *testing.T) {
			rt := NewResponseTranslator(p.api, p.target, ResponseOptions{Stream: true, EstimatedInputTokens: 1})
			rt.Headers(200, "text/event-stream")
			_, _ = rt.Chunk([]byte(p.start), false)
			m := &rt.(*driver).m
			for range 20000 {
				if _, err := rt.Chunk([]byte(p.delta(randomText(r, 8))), false); err != nil {
					t.Fatal(err)
				}
				if c := cap(m.out.pending); c > maxPendingOutput {
					t.Fatalf("held-back text buffer of %d bytes", c)
				}
			}
			if m.out.tokens == 0 {
				t.Error("full batches were not counted on the way")
			}
		})
	}
}

// A response whose provider reports usage before the meter is read is
// never tokenized: the held-back text is dropped at the report.
func TestReportedUsageIsNotTokenized(t *testing.T) {
	for _, tc := range []struct {
		name    string
		api     ClientAPI
		target  Target
		fixture string
	}{
		{"openai passthrough", OpenAIChat, Target{Kind: KindOpenAI, UpstreamModel: "g"}, "openai/stream.sse"},
		{"responses passthrough", OpenAIResponses, Target{Kind: KindOpenAI, UpstreamModel: "g"}, "openai/responses_stream.sse"},
		{"anthropic passthrough", AnthropicMessages, Target{Kind: KindAnthropic, UpstreamModel: "c"}, "anthropic/stream_text.sse"},
		{"anthropic to openai clients", OpenAIChat, anthropicTarget, "anthropic/stream_tool.sse"},
		{"openai to anthropic clients", AnthropicMessages, openAITarget, "openai/stream_tool.sse"},
		{"gemini to openai clients", OpenAIChat, geminiTarget, "gemini/stream_text.sse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := NewResponseTranslator(tc.api, tc.target, ResponseOptions{Stream: true, request: requestText{tc.api, []byte("{}")}})
			rt.Headers(200, "text/event-stream")
			if _, err := rt.Chunk(fixture(t, tc.fixture), true); err != nil {
				t.Fatal(err)
			}
			m := &rt.(*driver).m
			if u := rt.Usage(); u.Estimated || m.out.tokens != 0 || m.out.pending != nil || m.inKnown {
				t.Errorf("usage %+v; counted %d output tokens, holds %d bytes, input counted: %v", u, m.out.tokens, len(m.out.pending), m.inKnown)
			}
		})
	}
}

// Passthrough reads generated text from events it does not decode: escaped
// strings, tool call arguments and reasoning are counted too.
func TestPassthroughOutputText(t *testing.T) {
	tests := []struct {
		name   string
		api    ClientAPI
		target Target
		ct     string
		body   string
		text   string // what the estimate must count
	}{
		{"openai chunk: escapes, refusal, reasoning, tool arguments", OpenAIChat, Target{Kind: KindOpenAI, UpstreamModel: "g"}, "text/event-stream",
			`data: {"choices":[{"index":0,"delta":{"reasoning_content":"Think \"twice\"."}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"content":"caf\u00e9\nbar"}},{"index":1,"delta":{"refusal":"No."}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{\"a\":"}}]}}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}` + "\n\n",
			"Think \"twice\".café\nbarNo.{\"a\":1}"},
		{"responses events", OpenAIResponses, Target{Kind: KindOpenAI, UpstreamModel: "g"}, "text/event-stream",
			"event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"delta\":\"Plan.\"}\n\n" +
				"event: response.function_call_arguments.delta\ndata: {\"type\":\"response.function_call_arguments.delta\",\"delta\":\"{\\\"q\\\":1}\"}\n\n" +
				"data: {\"type\":\"response.output_text.delta\",\"delta\":\" Done\"}\n\n",
			"Plan.{\"q\":1} Done"},
		{"anthropic events: thinking, text, tool input", AnthropicMessages, Target{Kind: KindAnthropic, UpstreamModel: "c"}, "text/event-stream",
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Hmm.\"}}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"c2ln\"}}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Yes\\n\"}}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"x\\\": 2}\"}}\n\n",
			"Hmm.Yes\n{\"x\": 2}"},
		{"openai body without usage", OpenAIChat, Target{Kind: KindOpenAICompatible, UpstreamModel: "g"}, "application/json",
			`{"choices":[{"index":0,"message":{"role":"assistant","content":"Sure.","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}}]}`,
			"Sure.{}"},
		{"responses body without usage", OpenAIResponses, Target{Kind: KindOpenAICompatible, UpstreamModel: "g"}, "application/json",
			`{"output":[{"type":"reasoning","summary":[{"type":"summary_text","text":"Plan."}]},{"type":"function_call","name":"f","arguments":"{\"q\":2}"},` +
				`{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Here.","annotations":[]}]}]}`,
			"Plan.{\"q\":2}Here."},
		{"anthropic body without usage", AnthropicMessages, Target{Kind: KindAnthropic, UpstreamModel: "c"}, "application/json",
			`{"type":"message","content":[{"type":"thinking","thinking":"Hmm.","signature":"s"},{"type":"text","text":"Yes."},{"type":"tool_use","id":"t","name":"f","input":{"x":2}}]}`,
			"Hmm.Yes.{\"x\":2}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := exchange{api: tt.api, target: tt.target, opts: ResponseOptions{Stream: tt.ct == "text/event-stream", EstimatedInputTokens: 1}, contentType: tt.ct}
			r := runSplits(t, ex, []byte(tt.body))
			if r.out != tt.body {
				t.Errorf("passthrough changed the body:\n got %q\nwant %q", r.out, tt.body)
			}
			if want := tokens(tt.text); r.usage != (Usage{InputTokens: 1, OutputTokens: want, Estimated: true}) {
				t.Errorf("usage %+v, want %d output tokens: the count of %q", r.usage, want, tt.text)
			}
		})
	}
}

func ExampleResponseTranslator_Usage() {
	body := []byte(`{"model":"smart","stream":true,"messages":[{"role":"user","content":"Count to three."}]}`)
	target := Target{Kind: KindOpenAI, UpstreamModel: "gpt-4o"}
	preq, _ := TranslateRequest(OpenAIChat, target, body)
	rt := NewResponseTranslator(OpenAIChat, target, preq.Response)
	rt.Headers(200, "text/event-stream")
	// The stream is cut after two chunks, before OpenAI's usage chunk.
	_, _ = rt.Chunk([]byte(`data: {"choices":[{"index":0,"delta":{"content":"One,"}}]}`+"\n\n"+
		`data: {"choices":[{"index":0,"delta":{"content":" two,"}}]}`+"\n\n"), false)
	// Input: 3 tokens for the message, 1 for "user", 4 for "Count to
	// three.", 3 for the reply; output: the 4 tokens of "One, two,".
	fmt.Printf("%+v\n", rt.Usage())
	// Output: {InputTokens:11 OutputTokens:4 CachedInputTokens:0 CacheWriteInputTokens:0 ReasoningTokens:0 Estimated:true}
}

// appendUnescaped reads JSON strings as encoding/json does.
func FuzzAppendUnescaped(f *testing.F) {
	for _, s := range []string{`plain`, `a\"b\\c\/d\b\f\n\r\t`, `caf\u00e9 \u6771`, `\ud83d\ude00`, `\ud83d`, `\ude00x`, `\ud83dx`, `\ud83d\u0041`, `\ud83d\ud83d\ude00`, `\u12`, `\x`, `end\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var want string
		if !utf8.ValidString(raw) || json.Unmarshal([]byte(`"`+raw+`"`), &want) != nil {
			return // appendUnescaped is given only what the scanner found inside quotes
		}
		got, ok := appendUnescaped(nil, []byte(raw))
		if !ok || string(got) != want {
			t.Errorf("appendUnescaped(%q) = %q, %v; encoding/json: %q", raw, got, ok, want)
		}
	})
}

func FuzzCountInput(f *testing.F) {
	f.Add(uint8(OpenAIChat), []byte(cookbookTools))
	f.Add(uint8(OpenAIResponses), []byte(`{"instructions":"x","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]}]}`))
	f.Add(uint8(OpenAIEmbeddings), []byte(`{"input":[[1,2],"a"]}`))
	f.Add(uint8(AnthropicMessages), []byte(`{"system":"s","messages":[{"role":"user","content":[{"type":"tool_result","content":"r"}]}]}`))
	f.Fuzz(func(t *testing.T, api uint8, body []byte) {
		if n := countInput(tokencount.O200kBase, requestText{ClientAPI(api%5 + 1), body}); n < 0 {
			t.Errorf("estimate %d", n)
		}
	})
}
