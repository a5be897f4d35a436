package translate

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestOutputCapPassthrough checks Target.MaxOutputTokens on the pairs that
// edit the client's body in place: every other byte must survive.
func TestOutputCapPassthrough(t *testing.T) {
	target := func(kind ProviderKind, limit int64) Target {
		return Target{Kind: kind, UpstreamModel: "up", MaxOutputTokens: limit}
	}
	tests := []struct {
		name   string
		api    ClientAPI
		target Target
		in     string
		want   string
	}{
		// OpenAI Chat Completions.
		{"chat: max_completion_tokens above the cap is lowered", OpenAIChat, target(KindOpenAI, 1000),
			`{"model":"m", "max_completion_tokens" : 5000 ,"messages":[],"x_future":{"max_tokens":9}}`,
			`{"model":"up", "max_completion_tokens" : 1000 ,"messages":[],"x_future":{"max_tokens":9}}`},
		{"chat: max_tokens above the cap is lowered, nothing added", OpenAIChat, target(KindOpenAI, 1000),
			`{"model":"m","max_tokens":5000,"messages":[]}`,
			`{"model":"up","max_tokens":1000,"messages":[]}`},
		{"chat: both above: both lowered", OpenAIChat, target(KindAzureOpenAI, 1000),
			`{"model":"m","max_tokens":5000,"max_completion_tokens":7000,"messages":[]}`,
			`{"model":"up","max_tokens":1000,"max_completion_tokens":1000,"messages":[]}`},
		{"chat: one above, one below: only the one above lowered", OpenAIChat, target(KindOpenAI, 1000),
			`{"model":"m","max_tokens":500,"max_completion_tokens":7000,"messages":[]}`,
			`{"model":"up","max_tokens":500,"max_completion_tokens":1000,"messages":[]}`},
		{"chat: below the cap: unchanged", OpenAIChat, target(KindOpenAI, 1000),
			`{"model":"m","max_completion_tokens":500,"messages":[]}`,
			`{"model":"up","max_completion_tokens":500,"messages":[]}`},
		{"chat: at the cap: unchanged", OpenAIChat, target(KindOpenAICompatible, 1000),
			`{"model":"m","max_tokens":1000,"messages":[]}`,
			`{"model":"up","max_tokens":1000,"messages":[]}`},
		{"chat: other spellings of a number above the cap are lowered", OpenAIChat, target(KindOpenAI, 1000),
			`{"model":"m","max_tokens":1e4,"max_completion_tokens":1000.5,"messages":[]}`,
			`{"model":"up","max_tokens":1000,"max_completion_tokens":1000,"messages":[]}`},
		{"chat: a number too large for float64 is lowered", OpenAIChat, target(KindOpenAI, 1000),
			`{"model":"m","max_tokens":1e999,"messages":[]}`,
			`{"model":"up","max_tokens":1000,"messages":[]}`},
		{"chat: spellings below the cap are kept", OpenAIChat, target(KindOpenAI, 1000),
			`{"model":"m","max_tokens":5e2,"messages":[]}`,
			`{"model":"up","max_tokens":5e2,"messages":[]}`},
		{"chat: absent: max_completion_tokens added for openai", OpenAIChat, target(KindOpenAI, 1000),
			`{"model":"m","messages":[]}`,
			`{"model":"up","messages":[],"max_completion_tokens":1000}`},
		{"chat: absent: max_completion_tokens added for azure_openai", OpenAIChat, target(KindAzureOpenAI, 1000),
			`{"model":"m","messages":[]}`,
			`{"model":"up","messages":[],"max_completion_tokens":1000}`},
		{"chat: absent: max_tokens added for openai_compatible", OpenAIChat, target(KindOpenAICompatible, 1000),
			`{"model":"m","messages":[]}`,
			`{"model":"up","messages":[],"max_tokens":1000}`},
		{"chat: max_completion_tokens on a compatible server is lowered, max_tokens not added", OpenAIChat, target(KindOpenAICompatible, 1000),
			`{"model":"m","max_completion_tokens":5000,"messages":[]}`,
			`{"model":"up","max_completion_tokens":1000,"messages":[]}`},
		{"chat: null limits count as absent; the null one is filled", OpenAIChat, target(KindOpenAICompatible, 1000),
			`{"model":"m","max_tokens":null,"max_completion_tokens":null,"messages":[]}`,
			`{"model":"up","max_tokens":1000,"max_completion_tokens":null,"messages":[]}`},
		{"chat: null max_tokens on openai: max_completion_tokens added", OpenAIChat, target(KindOpenAI, 1000),
			`{"model":"m","max_tokens":null,"messages":[]}`,
			`{"model":"up","max_tokens":null,"messages":[],"max_completion_tokens":1000}`},
		{"chat: added next to stream_options and store", OpenAIChat, Target{Kind: KindOpenAI, UpstreamModel: "up", MaxOutputTokens: 1000, ForceNoStore: true},
			`{"model":"m","stream":true,"messages":[]}`,
			`{"model":"up","stream":true,"messages":[],"stream_options":{"include_usage":true},"store":false,"max_completion_tokens":1000}`},
		{"chat: cap 0: a high limit is kept", OpenAIChat, target(KindOpenAI, 0),
			`{"model":"m","max_tokens":5000,"max_completion_tokens":7000,"messages":[]}`,
			`{"model":"up","max_tokens":5000,"max_completion_tokens":7000,"messages":[]}`},
		{"chat: cap 0: nothing added", OpenAIChat, target(KindOpenAICompatible, 0),
			`{"model":"m","messages":[]}`,
			`{"model":"up","messages":[]}`},
		{"chat: cap 0: a duplicate limit is not looked at", OpenAIChat, target(KindOpenAI, 0),
			`{"model":"m","max_tokens":1,"max_tokens":"x","messages":[]}`,
			`{"model":"up","max_tokens":1,"max_tokens":"x","messages":[]}`},

		// OpenAI Responses.
		{"responses: above the cap is lowered", OpenAIResponses, target(KindOpenAI, 1000),
			`{"model":"m","input":"Hi","max_output_tokens":5000,"max_tokens":5000}`,
			`{"model":"up","input":"Hi","max_output_tokens":1000,"max_tokens":5000}`},
		{"responses: below the cap: unchanged", OpenAIResponses, target(KindOpenAI, 1000),
			`{"model":"m","input":"Hi","max_output_tokens":500}`,
			`{"model":"up","input":"Hi","max_output_tokens":500}`},
		{"responses: absent: max_output_tokens added", OpenAIResponses, target(KindOpenAICompatible, 1000),
			`{"model":"m","input":"Hi"}`,
			`{"model":"up","input":"Hi","max_output_tokens":1000}`},
		{"responses: cap 0: unchanged", OpenAIResponses, target(KindOpenAI, 0),
			`{"model":"m","input":"Hi","max_output_tokens":5000}`,
			`{"model":"up","input":"Hi","max_output_tokens":5000}`},

		// OpenAI Embeddings: no output limit.
		{"embeddings: nothing added or changed", OpenAIEmbeddings, target(KindOpenAI, 1000),
			`{"model":"m","input":"Hi","max_tokens":5000}`,
			`{"model":"up","input":"Hi","max_tokens":5000}`},

		// Anthropic Messages.
		{"messages: above the cap is lowered", AnthropicMessages, target(KindAnthropic, 1000),
			`{"model":"m","max_tokens": 5000,"messages":[{"role":"user","content":"Hi"}]}`,
			`{"model":"up","max_tokens": 1000,"messages":[{"role":"user","content":"Hi"}]}`},
		{"messages: below the cap: unchanged", AnthropicMessages, target(KindAnthropic, 1000),
			`{"model":"m","max_tokens":500,"messages":[{"role":"user","content":"Hi"}]}`,
			`{"model":"up","max_tokens":500,"messages":[{"role":"user","content":"Hi"}]}`},
		{"messages: absent: max_tokens added", AnthropicMessages, target(KindAnthropic, 1000),
			`{"model":"m","messages":[{"role":"user","content":"Hi"}]}`,
			`{"model":"up","messages":[{"role":"user","content":"Hi"}],"max_tokens":1000}`},
		{"messages: cap 0: unchanged", AnthropicMessages, target(KindAnthropic, 0),
			`{"model":"m","max_tokens":5000,"messages":[{"role":"user","content":"Hi"}]}`,
			`{"model":"up","max_tokens":5000,"messages":[{"role":"user","content":"Hi"}]}`},
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
			if !json.Valid(preq.Body) {
				t.Fatalf("invalid JSON %s", preq.Body)
			}
		})
	}
}

// TestOutputCapTranslated checks Target.MaxOutputTokens on the pairs that
// build a new body: the limit in the field the provider reads.
func TestOutputCapTranslated(t *testing.T) {
	const (
		chatAbove     = `{"model":"m","max_completion_tokens":5000,"messages":[{"role":"user","content":"Hi"}]}`
		chatAboveOld  = `{"model":"m","max_tokens":5000,"messages":[{"role":"user","content":"Hi"}]}`
		chatBelow     = `{"model":"m","max_completion_tokens":500,"messages":[{"role":"user","content":"Hi"}]}`
		chatAbsent    = `{"model":"m","messages":[{"role":"user","content":"Hi"}]}`
		messagesAbove = `{"model":"m","max_tokens":5000,"messages":[{"role":"user","content":"Hi"}]}`
		messagesBelow = `{"model":"m","max_tokens":500,"messages":[{"role":"user","content":"Hi"}]}`
	)
	anthropic := func(limit, def int64) Target {
		return Target{Kind: KindAnthropic, UpstreamModel: "up", MaxOutputTokens: limit, DefaultMaxTokens: def}
	}
	gemini := func(limit int64) Target { return Target{Kind: KindGemini, UpstreamModel: "up", MaxOutputTokens: limit} }
	openAIKind := func(kind ProviderKind, limit int64) Target {
		return Target{Kind: kind, UpstreamModel: "up", MaxOutputTokens: limit}
	}
	tests := []struct {
		name   string
		api    ClientAPI
		target Target
		in     string
		field  string // dotted path of the limit in the provider body
		want   int64  // -1: absent
		absent string // another limit field that must be absent
	}{
		// OpenAI Chat Completions → Anthropic.
		{"chat→anthropic: above the cap is lowered", OpenAIChat, anthropic(1000, 0), chatAbove, "max_tokens", 1000, ""},
		{"chat→anthropic: max_tokens above the cap is lowered", OpenAIChat, anthropic(1000, 0), chatAboveOld, "max_tokens", 1000, ""},
		{"chat→anthropic: below the cap: unchanged", OpenAIChat, anthropic(1000, 0), chatBelow, "max_tokens", 500, ""},
		{"chat→anthropic: absent: the default is capped", OpenAIChat, anthropic(1000, 0), chatAbsent, "max_tokens", 1000, ""},
		{"chat→anthropic: absent: a default below the cap is kept", OpenAIChat, anthropic(1000, 300), chatAbsent, "max_tokens", 300, ""},
		{"chat→anthropic: cap 0: the client's limit", OpenAIChat, anthropic(0, 0), chatAbove, "max_tokens", 5000, ""},
		{"chat→anthropic: cap 0: the default", OpenAIChat, anthropic(0, 0), chatAbsent, "max_tokens", DefaultMaxTokens, ""},
		{"chat→anthropic: thinking without a client limit: budget + default, capped", OpenAIChat, anthropic(2000, 0),
			`{"model":"m","reasoning_effort":"low","messages":[{"role":"user","content":"Hi"}]}`, "max_tokens", 2000, ""},
		{"chat→anthropic: thinking budget shrinks under the cap", OpenAIChat, anthropic(5000, 0),
			`{"model":"m","reasoning_effort":"medium","max_completion_tokens":20000,"messages":[{"role":"user","content":"Hi"}]}`, "thinking.budget_tokens", 4999, ""},

		// OpenAI Chat Completions → Gemini.
		{"chat→gemini: above the cap is lowered", OpenAIChat, gemini(1000), chatAbove, "generationConfig.maxOutputTokens", 1000, ""},
		{"chat→gemini: below the cap: unchanged", OpenAIChat, gemini(1000), chatBelow, "generationConfig.maxOutputTokens", 500, ""},
		{"chat→gemini: absent: the cap is set", OpenAIChat, gemini(1000), chatAbsent, "generationConfig.maxOutputTokens", 1000, ""},
		{"chat→gemini: cap 0: the client's limit", OpenAIChat, gemini(0), chatAbove, "generationConfig.maxOutputTokens", 5000, ""},
		{"chat→gemini: cap 0: absent stays absent", OpenAIChat, gemini(0), chatAbsent, "generationConfig", -1, ""},

		// Anthropic Messages → OpenAI-kind providers.
		{"messages→openai: above the cap is lowered", AnthropicMessages, openAIKind(KindOpenAI, 1000), messagesAbove, "max_completion_tokens", 1000, "max_tokens"},
		{"messages→azure: above the cap is lowered", AnthropicMessages, openAIKind(KindAzureOpenAI, 1000), messagesAbove, "max_completion_tokens", 1000, "max_tokens"},
		{"messages→compatible: above the cap is lowered", AnthropicMessages, openAIKind(KindOpenAICompatible, 1000), messagesAbove, "max_tokens", 1000, "max_completion_tokens"},
		{"messages→openai: below the cap: unchanged", AnthropicMessages, openAIKind(KindOpenAI, 1000), messagesBelow, "max_completion_tokens", 500, "max_tokens"},
		{"messages→compatible: below the cap: unchanged", AnthropicMessages, openAIKind(KindOpenAICompatible, 1000), messagesBelow, "max_tokens", 500, "max_completion_tokens"},
		{"messages→openai: cap 0: the client's limit", AnthropicMessages, openAIKind(KindOpenAI, 0), messagesAbove, "max_completion_tokens", 5000, "max_tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			preq, err := TranslateRequest(tt.api, tt.target, []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]any
			if err := json.Unmarshal(preq.Body, &body); err != nil {
				t.Fatal(err)
			}
			got, ok := lookup(body, tt.field)
			switch {
			case tt.want < 0 && ok:
				t.Fatalf("%s = %v, want absent in %s", tt.field, got, preq.Body)
			case tt.want >= 0 && (!ok || got != float64(tt.want)):
				t.Fatalf("%s = %v, want %d in %s", tt.field, got, tt.want, preq.Body)
			}
			if tt.absent != "" {
				if v, ok := lookup(body, tt.absent); ok {
					t.Fatalf("%s = %v, want absent in %s", tt.absent, v, preq.Body)
				}
			}
		})
	}
}

func lookup(v map[string]any, path string) (any, bool) {
	var cur any = v
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func TestOutputCapErrors(t *testing.T) {
	capped := func(kind ProviderKind) Target { return Target{Kind: kind, UpstreamModel: "up", MaxOutputTokens: 1000} }
	tests := []struct {
		name        string
		api         ClientAPI
		target      Target
		in          string
		code, param string
	}{
		{"chat: a limit that is not a number", OpenAIChat, capped(KindOpenAICompatible), `{"model":"m","max_tokens":"5000","messages":[]}`, CodeInvalidType, "max_tokens"},
		{"chat: a duplicate limit", OpenAIChat, capped(KindOpenAI), `{"model":"m","max_completion_tokens":10,"max_completion_tokens":5000,"messages":[]}`, CodeInvalidValue, "max_completion_tokens"},
		{"responses: a limit that is not a number", OpenAIResponses, capped(KindOpenAI), `{"model":"m","input":"Hi","max_output_tokens":true}`, CodeInvalidType, "max_output_tokens"},
		{"messages: a duplicate max_tokens", AnthropicMessages, capped(KindAnthropic), `{"model":"m","max_tokens":10,"max_tokens":5000,"messages":[]}`, CodeInvalidValue, "max_tokens"},
		{"messages: max_tokens an object", AnthropicMessages, capped(KindAnthropic), `{"model":"m","max_tokens":{},"messages":[]}`, CodeInvalidType, "max_tokens"},
		{"chat→anthropic: a cap too small for thinking", OpenAIChat, capped(KindAnthropic), `{"model":"m","reasoning_effort":"low","messages":[{"role":"user","content":"Hi"}]}`, CodeInvalidValue, "reasoning_effort"},
		{"chat→anthropic: a client limit too small for thinking", OpenAIChat, capped(KindAnthropic), `{"model":"m","reasoning_effort":"low","max_tokens":800,"messages":[{"role":"user","content":"Hi"}]}`, CodeInvalidValue, "max_completion_tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertRequestError(t, tt.api, tt.target, tt.in, tt.code, tt.param)
		})
	}
}
