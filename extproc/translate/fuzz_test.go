package translate

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// pairs lists every client API and provider kind combination, served or not.
var pairs = func() []exchange {
	var out []exchange
	for _, api := range []ClientAPI{OpenAIChat, OpenAIEmbeddings, OpenAIResponses, AnthropicMessages} {
		for _, k := range []ProviderKind{KindOpenAI, KindAzureOpenAI, KindOpenAICompatible, KindAnthropic, KindGemini} {
			out = append(out, exchange{api: api, target: Target{Kind: k, UpstreamModel: "up", ForceNoStore: true}})
		}
	}
	return out
}()

func FuzzTranslateRequest(f *testing.F) {
	for _, tt := range requestErrorCases {
		f.Add([]byte(tt.in))
	}
	f.Add([]byte(`{"model":"m","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"x"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]},{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"a","content":"1"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"required","response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object"}}},"reasoning_effort":"low","max_tokens":2000}`))
	f.Add([]byte(`{"model":"c","max_tokens":9,"system":"s","messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r"}]}]},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]}],"tools":[{"name":"f","input_schema":{}}],"tool_choice":{"type":"tool","name":"f"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for i := range 2 * len(pairs) {
			// Every pair twice: without and with an output cap.
			p := pairs[i%len(pairs)]
			if i >= len(pairs) {
				p.target.MaxOutputTokens = 100
			}
			preq, err := TranslateRequest(p.api, p.target, body)
			if err != nil {
				e, ok := errorAs[*Error](err)
				if !ok {
					t.Fatalf("%s/%s: error %T %v, want *Error", p.api, p.target.Kind, err, err)
				}
				if !json.Valid(e.Body(p.api)) || e.Status == 0 || e.Message == "" {
					t.Fatalf("%s/%s: bad error %+v", p.api, p.target.Kind, e)
				}
				continue
			}
			if !json.Valid(preq.Body) {
				t.Fatalf("%s/%s: provider body is not JSON: %q from %q", p.api, p.target.Kind, preq.Body, body)
			}
		}
	})
}

func FuzzResponseTranslator(f *testing.F) {
	for _, dir := range []string{"anthropic", "gemini", "openai"} {
		files, _ := os.ReadDir(filepath.Join("testdata", "provider", dir))
		for _, fi := range files {
			b, err := os.ReadFile(filepath.Join("testdata", "provider", dir, fi.Name()))
			if err == nil {
				f.Add(b, uint64(len(b)), true)
				f.Add(b, uint64(len(b)), false)
			}
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, seed uint64, stream bool) {
		ct := "application/json"
		if stream {
			ct = "text/event-stream"
		}
		for _, p := range pairs {
			for _, status := range []int{200, 500} {
				rt := NewResponseTranslator(p.api, p.target, ResponseOptions{Stream: stream, IncludeUsage: seed%2 == 0})
				rt.Headers(status, ct)
				chunks := randomSplit(rand.New(rand.NewPCG(seed, 1)), body)
				for i, c := range chunks {
					if _, err := rt.Chunk(c, i == len(chunks)-1); err != nil {
						break
					}
				}
				_ = rt.Usage()
			}
		}
	})
}
