package translate

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestUnsupportedPairs(t *testing.T) {
	body := []byte(`{"model":"m","input":"x","messages":[{"role":"user","content":"x"}],"max_tokens":5}`)
	tests := []struct {
		api    ClientAPI
		kind   ProviderKind
		status int
		code   string
	}{
		{OpenAIResponses, KindAnthropic, 400, CodeUnsupportedAPI},
		{OpenAIResponses, KindGemini, 400, CodeUnsupportedAPI},
		{OpenAIEmbeddings, KindAnthropic, 400, CodeUnsupportedAPI},
		{OpenAIEmbeddings, KindGemini, 400, CodeUnsupportedAPI},
		{AnthropicMessages, KindGemini, 400, CodeUnsupportedAPI},
		{OpenAIChat, ProviderKind("bedrock"), 500, CodeUnsupportedAPI},
		{ClientAPI(99), KindOpenAI, 400, CodeUnsupportedAPI},
	}
	for _, tt := range tests {
		t.Run(tt.api.String()+"/"+string(tt.kind), func(t *testing.T) {
			_, err := TranslateRequest(tt.api, Target{Kind: tt.kind, UpstreamModel: "u"}, body)
			e, ok := errorAs[*Error](err)
			if !ok || e.Status != tt.status || e.Code != tt.code {
				t.Fatalf("err = %#v", err)
			}
			// Its response translator forwards whatever arrives.
			rt := NewResponseTranslator(tt.api, Target{Kind: tt.kind}, ResponseOptions{})
			rt.Headers(200, "application/json")
			if out, err := rt.Chunk([]byte(`{"x":1}`), true); string(out) != `{"x":1}` || err != nil {
				t.Fatalf("%s %v", out, err)
			}
		})
	}
}

func TestTargetWithoutUpstreamModel(t *testing.T) {
	_, err := TranslateRequest(OpenAIChat, Target{Kind: KindOpenAI}, []byte(`{"model":"m","messages":[]}`))
	if e, ok := errorAs[*Error](err); !ok || e.Status != 500 {
		t.Fatalf("err = %v: a deployment without an upstream model is the operator's fault, not the client's", err)
	}
}

func TestCredentialHeaders(t *testing.T) {
	tests := []struct {
		kind ProviderKind
		cred string
		want []Header
	}{
		{KindOpenAI, "sk-1", []Header{{Name: "authorization", Value: "Bearer sk-1"}}},
		{KindOpenAICompatible, "gsk-2", []Header{{Name: "authorization", Value: "Bearer gsk-2"}}},
		{KindOpenAICompatible, "", nil},
		{KindAnthropic, "sk-ant-3", []Header{{Name: "x-api-key", Value: "sk-ant-3"}}},
		{KindGemini, "AIza4", []Header{{Name: "x-goog-api-key", Value: "AIza4"}}},
		{KindAzureOpenAI, "az5", []Header{{Name: "api-key", Value: "az5"}}},
	}
	for _, tt := range tests {
		if got := CredentialHeaders(tt.kind, tt.cred); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.kind, got, tt.want)
		}
	}
	// Every header a credential travels in is one the caller strips from the
	// client's request, so no Tollgate key can ride along to a provider.
	strip := map[string]bool{}
	for _, h := range ClientCredentialHeaders() {
		strip[h] = true
	}
	for _, tt := range tests {
		for _, h := range tt.want {
			if !strip[h.Name] {
				t.Errorf("%s is not in ClientCredentialHeaders", h.Name)
			}
		}
	}
}

func TestResponseTranslatorLifecycle(t *testing.T) {
	t.Run("Chunk without Headers treats the body as a 200 of the requested kind", func(t *testing.T) {
		rt := NewResponseTranslator(OpenAIChat, anthropicTarget, ResponseOptions{Stream: true})
		out, err := rt.Chunk(fixture(t, "anthropic/stream_text.sse"), true)
		if err != nil || summarizeChatStream(t, string(out)).Content[0] == "" {
			t.Fatalf("%s %v", out, err)
		}
	})
	t.Run("usage before any response is the request's estimate", func(t *testing.T) {
		rt := NewResponseTranslator(OpenAIChat, anthropicTarget, ResponseOptions{EstimatedInputTokens: 42})
		if u := rt.Usage(); u != (Usage{InputTokens: 42, Estimated: true}) {
			t.Fatalf("usage %+v", u)
		}
	})
	t.Run("nothing after the end", func(t *testing.T) {
		rt := NewResponseTranslator(OpenAIChat, geminiTarget, ResponseOptions{})
		rt.Headers(200, "application/json")
		if _, err := rt.Chunk(fixture(t, "gemini/text.json"), true); err != nil {
			t.Fatal(err)
		}
		if out, err := rt.Chunk([]byte("more"), true); out != nil || err != nil {
			t.Fatalf("%q %v", out, err)
		}
	})
	t.Run("a 200 that is not the provider's JSON is a ProviderResponseError", func(t *testing.T) {
		for _, target := range []Target{anthropicTarget, geminiTarget} {
			rt := NewResponseTranslator(OpenAIChat, target, ResponseOptions{})
			rt.Headers(200, "application/json")
			_, err := rt.Chunk([]byte("<html>oops</html>"), true)
			if !errorIs[*ProviderResponseError](err) {
				t.Fatalf("%s: err = %v", target.Kind, err)
			}
		}
	})
	t.Run("a malformed event mid-stream stops the stream with a ProviderResponseError", func(t *testing.T) {
		rt := NewResponseTranslator(OpenAIChat, anthropicTarget, ResponseOptions{Stream: true})
		rt.Headers(200, "text/event-stream")
		_, err := rt.Chunk([]byte("event: message_start\ndata: {not json\n\n"), false)
		if !errorIs[*ProviderResponseError](err) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("an event over the size limit stops the stream", func(t *testing.T) {
		rt := NewResponseTranslator(OpenAIChat, Target{Kind: KindOpenAI, UpstreamModel: "g"}, ResponseOptions{Stream: true})
		rt.Headers(200, "text/event-stream")
		big := make([]byte, DefaultMaxSSEEvent+10)
		for i := range big {
			big[i] = 'x'
		}
		_, err := rt.Chunk(append([]byte("data: "), big...), false)
		if !errorIs[*ProviderResponseError](err) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("an error body is held to a bounded size", func(t *testing.T) {
		rt := NewResponseTranslator(OpenAIChat, geminiTarget, ResponseOptions{})
		rt.Headers(503, "text/plain")
		for range 100 {
			if out, _ := rt.Chunk(make([]byte, 4096), false); out != nil {
				t.Fatal("error body forwarded before its end")
			}
		}
		out, _ := rt.Chunk(nil, true)
		if !json.Valid(out) || len(out) > 4096 {
			t.Fatalf("error body of %d bytes", len(out))
		}
	})
}

func TestTranslateError(t *testing.T) {
	tests := []struct {
		name   string
		api    ClientAPI
		kind   ProviderKind
		status int
		body   string
		want   string
	}{
		{"Anthropic error to an Anthropic client: unchanged", AnthropicMessages, KindAnthropic, 429,
			`{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`,
			`{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`},
		{"Gemini error to an Anthropic client", AnthropicMessages, KindGemini, 403,
			`{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}`,
			`{"type":"error","error":{"type":"permission_error","message":"denied"}}`},
		{"OpenAI error with a numeric code", OpenAIChat, KindAnthropic, 400,
			`{"error":{"message":"bad","type":"invalid_request_error","param":"messages","code":400}}`,
			`{"error":{"message":"bad","type":"invalid_request_error","param":"messages","code":"400"}}`},
		{"compatible server's string error", OpenAIChat, KindAnthropic, 500,
			`{"error":"engine crashed"}`,
			`{"error":{"message":"engine crashed","type":"server_error","param":null,"code":null}}`},
		{"empty body", OpenAIChat, KindGemini, 504, ``,
			`{"error":{"message":"The provider answered with HTTP status 504 and no error message.","type":"server_error","param":null,"code":null}}`},
		{"invalid UTF-8 kept valid", OpenAIChat, KindGemini, 500, "bad \xff byte",
			`{"error":{"message":"bad ` + "\uFFFD" + ` byte","type":"server_error","param":null,"code":null}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := TranslateError(tt.api, tt.kind, tt.status, []byte(tt.body))
			if string(got) != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "\x00\x01\x1f\t\n\r", "<>&", "é😀", "\u2028\u2029", "bad\xffutf8", "\xed\xa0\x80"} {
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, got, err)
		}
		want, _ := json.Marshal(s) // encoding/json also replaces invalid UTF-8
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q: round trip %q, encoding/json gives %q", s, back, wantBack)
		}
	}
}

func TestRequestModel(t *testing.T) {
	tests := []struct {
		in, want, code string
	}{
		{`{"messages":[{"model":"not this"}],"model":"gpt-4.1"}`, "gpt-4.1", ""},
		{`{"m\u006fdel":"esc\u00e9"}`, "escé", ""},
		{`{"model":"a","model":"b"}`, "", CodeInvalidValue},
		{`{"messages":[]}`, "", CodeMissingParameter},
		{`{"model":7}`, "", CodeInvalidType},
		{`{"model":"a",}`, "", CodeInvalidJSON},
		{`[]`, "", CodeInvalidJSON},
		{``, "", CodeInvalidJSON},
	}
	for _, tt := range tests {
		got, err := RequestModel([]byte(tt.in))
		if tt.code == "" {
			if err != nil || got != tt.want {
				t.Errorf("%s: %q %v, want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		if e, ok := errorAs[*Error](err); !ok || e.Code != tt.code {
			t.Errorf("%s: err = %v, want code %s", tt.in, err, tt.code)
		}
	}
}
