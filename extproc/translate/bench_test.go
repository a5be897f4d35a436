package translate

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/extproc/tokencount"
)

// benchChatRequest is a realistic agent turn: a system prompt, a few
// exchanges with tool calls and results, and tool definitions.
var benchChatRequest = func() []byte {
	var b strings.Builder
	b.WriteString(`{"model":"smart","stream":true,"max_completion_tokens":2048,"temperature":0.3,"messages":[`)
	b.WriteString(`{"role":"system","content":"` + strings.Repeat("You are a careful assistant. ", 40) + `"},`)
	for i := range 6 {
		b.WriteString(`{"role":"user","content":"` + strings.Repeat("Please look into the weather and the time. ", 10) + `"},`)
		b.WriteString(`{"role":"assistant","content":"Checking.","tool_calls":[{"id":"call_` + string(rune('a'+i)) + `","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}]},`)
		b.WriteString(`{"role":"tool","tool_call_id":"call_` + string(rune('a'+i)) + `","content":"{\"temp\":21,\"sky\":\"clear\"}"},`)
	}
	b.WriteString(`{"role":"user","content":"Thanks. And tomorrow?"}],`)
	b.WriteString(`"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"],"additionalProperties":false}}},`)
	b.WriteString(`{"type":"function","function":{"name":"get_time","description":"Local time","parameters":{"type":"object","properties":{"tz":{"type":"string"}}}}}]}`)
	return []byte(b.String())
}()

var benchAnthropicRequest = []byte(`{"model":"claude","max_tokens":2048,"stream":true,"system":"` + strings.Repeat("You are a careful assistant. ", 40) + `",` +
	`"messages":[{"role":"user","content":"Weather?"},{"role":"assistant","content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},` +
	`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"21C, clear"},{"type":"text","text":"And tomorrow?"}]}],` +
	`"tools":[{"name":"get_weather","description":"Weather for a city","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]}`)

func BenchmarkTranslateRequest(b *testing.B) {
	cases := []struct {
		name   string
		api    ClientAPI
		target Target
		body   []byte
	}{
		{"openai_passthrough", OpenAIChat, Target{Kind: KindOpenAI, UpstreamModel: "gpt-4.1", ForceNoStore: true}, benchChatRequest},
		{"openai_to_anthropic", OpenAIChat, anthropicTarget, benchChatRequest},
		{"openai_to_gemini", OpenAIChat, geminiTarget, benchChatRequest},
		{"anthropic_passthrough", AnthropicMessages, Target{Kind: KindAnthropic, UpstreamModel: "claude-opus-4-5"}, benchAnthropicRequest},
		{"anthropic_to_openai", AnthropicMessages, openAITarget, benchAnthropicRequest},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if _, err := TranslateRequest(c.api, c.target, c.body); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = TranslateRequest(c.api, c.target, c.body)
			}
		})
	}
}

// BenchmarkResponse replays whole responses; streams arrive one SSE event
// per Chunk call, as Envoy usually delivers them. ns/event is the cost of
// one event on the hot path.
func BenchmarkResponse(b *testing.B) {
	cases := []struct {
		name    string
		api     ClientAPI
		target  Target
		fixture string
		stream  bool
	}{
		{"openai_passthrough/json", OpenAIChat, Target{Kind: KindOpenAI}, "openai/chat.json", false},
		{"openai_passthrough/stream", OpenAIChat, Target{Kind: KindOpenAI}, "openai/stream.sse", true},
		{"openai_to_anthropic/json", OpenAIChat, anthropicTarget, "anthropic/message_tool.json", false},
		{"openai_to_anthropic/stream", OpenAIChat, anthropicTarget, "anthropic/stream_tool.sse", true},
		{"openai_to_gemini/json", OpenAIChat, geminiTarget, "gemini/tool.json", false},
		{"openai_to_gemini/stream", OpenAIChat, geminiTarget, "gemini/stream_text.sse", true},
		{"anthropic_passthrough/stream", AnthropicMessages, Target{Kind: KindAnthropic}, "anthropic/stream_tool.sse", true},
		{"anthropic_to_openai/json", AnthropicMessages, openAITarget, "openai/chat_tool.json", false},
		{"anthropic_to_openai/stream", AnthropicMessages, openAITarget, "openai/stream_tool.sse", true},
		{"responses_passthrough/stream", OpenAIResponses, Target{Kind: KindOpenAI}, "openai/responses_stream.sse", true},
	}
	if err := tokencount.Warm(); err != nil {
		b.Fatal(err)
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			body := fixture(b, c.fixture)
			chunks := [][]byte{body}
			ct := "application/json"
			if c.stream {
				ct = "text/event-stream"
				chunks = splitEvents(body)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				rt := NewResponseTranslator(c.api, c.target, ResponseOptions{Stream: c.stream, IncludeUsage: true})
				rt.Headers(200, ct)
				for i, ch := range chunks {
					if _, err := rt.Chunk(ch, i == len(chunks)-1); err != nil {
						b.Fatal(err)
					}
				}
				_ = rt.Usage()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(chunks)), "ns/chunk")
		})
	}
}

// splitEvents cuts an SSE body after each blank line.
func splitEvents(body []byte) [][]byte {
	var out [][]byte
	for len(body) > 0 {
		i := bytes.Index(body, []byte("\n\n"))
		if j := bytes.Index(body, []byte("\r\n\r\n")); j >= 0 && (i < 0 || j < i) {
			i = j + 2
		}
		if i < 0 {
			out = append(out, body)
			break
		}
		out = append(out, body[:i+2])
		body = body[i+2:]
	}
	return out
}

// BenchmarkUsagePerChunk is the cost of one typical content chunk on an
// established passthrough stream: parsing the event and checking it for
// usage, which is all that passthrough does per chunk.
func BenchmarkUsagePerChunk(b *testing.B) {
	cases := []struct {
		name   string
		api    ClientAPI
		target Target
		chunk  string
	}{
		{"openai_content_chunk", OpenAIChat, Target{Kind: KindOpenAI},
			`data: {"id":"chatcmpl-TgStream01","object":"chat.completion.chunk","created":1760000006,"model":"gpt-4.1-mini","service_tier":"default","system_fingerprint":"fp_tg","choices":[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Qq"}` + "\n\n"},
		{"openai_usage_chunk", OpenAIChat, Target{Kind: KindOpenAI},
			`data: {"id":"chatcmpl-TgStream01","object":"chat.completion.chunk","created":1760000006,"model":"gpt-4.1-mini","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":210,"total_tokens":229,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":192,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}` + "\n\n"},
		{"anthropic_delta_event", AnthropicMessages, Target{Kind: KindAnthropic},
			"event: content_block_delta\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world"}}` + "\n\n"},
		{"anthropic_message_delta_event", AnthropicMessages, Target{Kind: KindAnthropic},
			"event: message_delta\n" + `data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":14}}` + "\n\n"},
		{"anthropic_to_openai_delta_event", OpenAIChat, anthropicTarget,
			"event: content_block_delta\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world"}}` + "\n\n"},
		{"gemini_to_openai_chunk", OpenAIChat, geminiTarget,
			`data: {"candidates":[{"content":{"parts":[{"text":" world"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9},"modelVersion":"gemini-2.5-flash","responseId":"r"}` + "\r\n\r\n"},
	}
	if err := tokencount.Warm(); err != nil { // not the first count's load
		b.Fatal(err)
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			rt := NewResponseTranslator(c.api, c.target, ResponseOptions{Stream: true})
			rt.Headers(200, "text/event-stream")
			chunk := []byte(c.chunk)
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rt.Chunk(chunk, false); err != nil {
					b.Fatal(err)
				}
			}
		})
		// As ext_proc drives it: the usage read after every chunk, which
		// counts the chunk's text while the provider has not reported.
		b.Run(c.name+"/usage_read_per_chunk", func(b *testing.B) {
			rt := NewResponseTranslator(c.api, c.target, ResponseOptions{Stream: true, EstimatedInputTokens: 1})
			rt.Headers(200, "text/event-stream")
			chunk := []byte(c.chunk)
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rt.Chunk(chunk, false); err != nil {
					b.Fatal(err)
				}
				_ = rt.Usage()
			}
		})
	}
}

// BenchmarkInputEstimate is the cost of counting a request's input tokens,
// paid the first time the usage of a response without a final report is
// read.
func BenchmarkInputEstimate(b *testing.B) {
	large, _ := json.Marshal(map[string]any{"model": "m", "messages": []map[string]string{
		{"role": "user", "content": strings.Repeat("The quick brown fox jumps over the lazy dog. ", 24000)}}})
	for _, c := range []struct {
		name string
		api  ClientAPI
		body []byte
	}{
		{"chat_agent_turn_6KB", OpenAIChat, benchChatRequest},
		{"anthropic_turn", AnthropicMessages, benchAnthropicRequest},
		{"chat_1MB_prompt", OpenAIChat, large},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := requestText{api: c.api, body: c.body}
			countInput(tokencount.O200kBase, r)
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				countInput(tokencount.O200kBase, r)
			}
		})
	}
}

func BenchmarkSSEParser(b *testing.B) {
	body := fixture(b, "openai/stream.sse")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var p SSEParser
	for b.Loop() {
		p.Write(body)
		for {
			_, ok, err := p.Next(false)
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				break
			}
		}
	}
}
