package translate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recordingsDir holds provider responses recorded from the live APIs, kept
// beside the checkout in CI (../shared) and not committed here (their README
// asks so). The tests below replay every one of them through each translator
// that reads that provider, and check the usage against the figures the
// recordings report. Without the directory they are skipped; the fixtures
// under testdata/provider, written for this package in the same formats,
// cover the same ground.
const recordingsDir = "../../../shared/provider-recordings"

func recording(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(recordingsDir, name))
	if os.IsNotExist(err) {
		t.Skipf("%s not present (it lives in ../shared beside the checkout)", recordingsDir)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRecordingsUsage(t *testing.T) {
	if _, err := os.Stat(recordingsDir); err != nil {
		t.Skipf("%s not present (it lives in ../shared beside the checkout)", recordingsDir)
	}
	tests := []struct {
		file  string
		usage Usage
	}{
		// Anthropic: input_tokens + cache reads + cache writes.
		{"anthropic/basic.json", Usage{InputTokens: 40, OutputTokens: 21, CachedInputTokens: 12, CacheWriteInputTokens: 13}},
		{"anthropic/multiple_text_blocks.json", Usage{InputTokens: 15, OutputTokens: 21}},
		{"anthropic/thinking.json", Usage{InputTokens: 50, OutputTokens: 251, CachedInputTokens: 2, CacheWriteInputTokens: 1}},
		{"anthropic/tool.json", Usage{InputTokens: 561, OutputTokens: 48, CachedInputTokens: 2, CacheWriteInputTokens: 1}},
		{"anthropic/stream_basic.json", Usage{InputTokens: 15, OutputTokens: 21}},
		// message_delta's counts replace message_start's.
		{"anthropic/stream_message_delta_usage.json", Usage{InputTokens: 34347, OutputTokens: 49, CachedInputTokens: 30464}},
		{"anthropic/stream_thinking.json", Usage{InputTokens: 47, OutputTokens: 264}},
		{"anthropic/stream_tool.json", Usage{InputTokens: 15, OutputTokens: 12}},
		{"anthropic/stream_tool_empty_args.json", Usage{InputTokens: 15, OutputTokens: 8}},
		// Gemini: output includes thoughts.
		{"gemini/basic.json", Usage{InputTokens: 8, OutputTokens: 6}},
		{"gemini/blocked.json", Usage{InputTokens: 12}},
		{"gemini/reasoning.json", Usage{InputTokens: 10, OutputTokens: 17, ReasoningTokens: 5}},
		{"gemini/tool.json", Usage{InputTokens: 20, OutputTokens: 8}},
		{"gemini/stream_tool.json", Usage{InputTokens: 15, OutputTokens: 12}},
		// OpenAI and compatible servers.
		{"openai/audio.json", Usage{InputTokens: 320, OutputTokens: 180, CachedInputTokens: 12, ReasoningTokens: 15}},
		{"openai/basic.json", Usage{InputTokens: 17, OutputTokens: 23}},
		{"openai/cache_write.json", Usage{InputTokens: 1000, OutputTokens: 10, CachedInputTokens: 300, CacheWriteInputTokens: 200}},
		{"openai/embeddings.json", Usage{InputTokens: 8}},
		{"openai/gemini_with_completion_tokens.json", Usage{InputTokens: 7, OutputTokens: 12}},
		{"openai/gemini_zero_completion_tokens.json", Usage{InputTokens: 7}},
		{"openai/openrouter_reasoning.json", Usage{InputTokens: 23, OutputTokens: 796}},
		{"openai/stream.json", Usage{InputTokens: 18, OutputTokens: 286, ReasoningTokens: 192}},
		{"openai/stream_tool_empty_content.json", Usage{InputTokens: 12, OutputTokens: 8}},
		{"openai/tool_call.json", Usage{InputTokens: 25, OutputTokens: 18}},
		{"openai/truncated_tool_call.json", Usage{InputTokens: 20, OutputTokens: 15}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body := recording(t, tt.file)
			stream := strings.HasPrefix(strings.TrimSpace(string(body)), "data:") || strings.HasPrefix(strings.TrimSpace(string(body)), "event:")
			ct := "application/json"
			if stream {
				ct = "text/event-stream"
			}
			var exs []exchange
			switch {
			case strings.HasPrefix(tt.file, "anthropic/"):
				exs = []exchange{
					{api: AnthropicMessages, target: Target{Kind: KindAnthropic, UpstreamModel: "c"}},
					{api: OpenAIChat, target: anthropicTarget},
				}
			case strings.HasPrefix(tt.file, "gemini/"):
				exs = []exchange{{api: OpenAIChat, target: geminiTarget}}
			case strings.Contains(tt.file, "embeddings"):
				exs = []exchange{{api: OpenAIEmbeddings, target: Target{Kind: KindOpenAI, UpstreamModel: "e"}}}
			default:
				exs = []exchange{
					{api: OpenAIChat, target: Target{Kind: KindOpenAICompatible, UpstreamModel: "g"}},
					{api: AnthropicMessages, target: openAITarget},
				}
			}
			for _, ex := range exs {
				ex.contentType = ct
				ex.opts = ResponseOptions{Stream: stream, IncludeUsage: true}
				r := runSplits(t, ex, body)
				if r.err != nil {
					t.Fatalf("%v via %s/%s: %v", tt.file, ex.api, ex.target.Kind, r.err)
				}
				if r.usage != tt.usage {
					t.Errorf("%s via %s/%s: usage = %+v, want %+v", tt.file, ex.api, ex.target.Kind, r.usage, tt.usage)
				}
				checkClientShape(t, ex, stream, r.out)
			}
		})
	}
}

// checkClientShape checks that what the client receives is well formed in
// the client's API.
func checkClientShape(t *testing.T, ex exchange, stream bool, out string) {
	t.Helper()
	switch {
	case stream && ex.api == OpenAIChat:
		s := summarizeChatStream(t, out)
		if !s.Done || s.Usage == nil {
			t.Errorf("%s/%s: stream not finished with usage: %+v", ex.api, ex.target.Kind, s)
		}
	case stream && ex.api == AnthropicMessages:
		if s := summarizeMessagesStream(t, out); !s.Stopped {
			t.Errorf("%s/%s: stream not stopped: %+v", ex.api, ex.target.Kind, s)
		}
	default:
		if !json.Valid([]byte(out)) {
			t.Errorf("%s/%s: body is not JSON: %s", ex.api, ex.target.Kind, out)
		}
	}
}

// Facts the recordings show beyond usage.
func TestRecordingsContent(t *testing.T) {
	t.Run("Anthropic tool call with empty arguments reaches OpenAI clients as {}", func(t *testing.T) {
		body := recording(t, "anthropic/stream_tool_empty_args.json")
		r := runSplits(t, exchange{api: OpenAIChat, target: anthropicTarget, opts: ResponseOptions{Stream: true}, contentType: "text/event-stream"}, body)
		s := summarizeChatStream(t, r.out)
		if len(s.Tools[0]) != 1 || s.Tools[0][0].Args != "{}" || s.Tools[0][0].Name != "get_time" || s.Finish[0] != "tool_calls" {
			t.Fatalf("summary %+v", s)
		}
	})
	t.Run("Anthropic streamed tool arguments are reassembled", func(t *testing.T) {
		body := recording(t, "anthropic/stream_tool.json")
		r := runSplits(t, exchange{api: OpenAIChat, target: anthropicTarget, opts: ResponseOptions{Stream: true}, contentType: "text/event-stream"}, body)
		s := summarizeChatStream(t, r.out)
		if len(s.Tools[0]) != 1 || s.Tools[0][0].Args != `{"location":"San Francisco"}` || s.Tools[0][0].ID != "toolu_01A" {
			t.Fatalf("summary %+v", s)
		}
	})
	t.Run("Gemini blocked prompt is a content_filter finish with a refusal", func(t *testing.T) {
		body := recording(t, "gemini/blocked.json")
		r := runSplits(t, exchange{api: OpenAIChat, target: geminiTarget, contentType: "application/json"}, body)
		var cc chatCompletion
		if err := json.Unmarshal([]byte(r.out), &cc); err != nil {
			t.Fatal(err)
		}
		if cc.Choices[0].FinishReason != "content_filter" || cc.Choices[0].Message.Refusal == nil {
			t.Fatalf("%s", r.out)
		}
	})
	t.Run("OpenAI usage chunk is removed for clients that did not ask", func(t *testing.T) {
		body := recording(t, "openai/stream.json")
		r := runSplits(t, exchange{api: OpenAIChat, target: Target{Kind: KindOpenAI, UpstreamModel: "g"}, opts: ResponseOptions{Stream: true}, contentType: "text/event-stream"}, body)
		s := summarizeChatStream(t, r.out)
		if s.Usage != nil || !s.Done || r.usage.OutputTokens != 286 {
			t.Fatalf("usage chunk kept or usage lost: %+v %+v", s.Usage, r.usage)
		}
		if len(r.out) >= len(body) {
			t.Fatal("nothing removed")
		}
	})
	t.Run("Gemini's OpenAI endpoint without usage gives an estimate", func(t *testing.T) {
		body := recording(t, "openai/gemini-embeddings.json")
		r := runSplits(t, exchange{api: OpenAIEmbeddings, target: Target{Kind: KindOpenAICompatible, UpstreamModel: "e"}, opts: ResponseOptions{EstimatedInputTokens: 5}, contentType: "application/json"}, body)
		if !r.usage.Estimated || r.usage.InputTokens != 5 || r.out != string(body) {
			t.Fatalf("usage %+v", r.usage)
		}
	})
}
