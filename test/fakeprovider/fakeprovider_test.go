package fakeprovider

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The standard conversation: 3 + 4 prompt words, and a 6-word reply.
var hello = chatReq{system: "be brief now", user: "hello there my friend"}

func TestReplyAndUsageAreDeterministicAndInTheProvidersFields(t *testing.T) {
	scripted := []string{HeaderCachedTokens, "2", HeaderCacheWriteTokens, "1", HeaderReasoningTokens, "3"}
	cases := []struct {
		kind    Kind
		text    string // where the reply text is
		usage   map[string]int
		recUsed Usage
	}{
		{OpenAI, "choices.0.message.content", map[string]int{
			"usage.prompt_tokens": 7, "usage.prompt_tokens_details.cached_tokens": 2,
			"usage.completion_tokens": 9, "usage.completion_tokens_details.reasoning_tokens": 3, "usage.total_tokens": 16,
		}, Usage{InputTokens: 7, CachedTokens: 2, OutputTokens: 9, ReasoningTokens: 3}},
		{AzureOpenAI, "choices.0.message.content", map[string]int{
			"usage.prompt_tokens": 7, "usage.prompt_tokens_details.cached_tokens": 2,
			"usage.completion_tokens": 9, "usage.completion_tokens_details.reasoning_tokens": 3, "usage.total_tokens": 16,
		}, Usage{InputTokens: 7, CachedTokens: 2, OutputTokens: 9, ReasoningTokens: 3}},
		{Anthropic, "content.0.text", map[string]int{
			// Anthropic's input_tokens leaves out cache reads and writes.
			"usage.input_tokens": 4, "usage.cache_read_input_tokens": 2, "usage.cache_creation_input_tokens": 1,
			"usage.output_tokens": 9,
		}, Usage{InputTokens: 7, CachedTokens: 2, CacheWriteTokens: 1, OutputTokens: 9, ReasoningTokens: 3}},
		{Gemini, "candidates.0.content.parts.0.text", map[string]int{
			// Gemini's candidatesTokenCount leaves out thoughts.
			"usageMetadata.promptTokenCount": 7, "usageMetadata.cachedContentTokenCount": 2,
			"usageMetadata.candidatesTokenCount": 6, "usageMetadata.thoughtsTokenCount": 3, "usageMetadata.totalTokenCount": 16,
		}, Usage{InputTokens: 7, CachedTokens: 2, OutputTokens: 9, ReasoningTokens: 3}},
	}
	for _, tc := range cases {
		t.Run(string(tc.kind), func(t *testing.T) {
			s := startFake(t, tc.kind, Options{})
			r := chat(t, s, hello, scripted...)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			v := jsonOf(t, r.body)
			name := strings.TrimSuffix(string(tc.kind), "_openai")
			if got, want := get(v, tc.text), "fake-"+name+" reply: hello there my friend"; got != want {
				t.Errorf("reply %q, want %q", got, want)
			}
			for path, want := range tc.usage {
				if got := num(v, path); got != want {
					t.Errorf("%s = %d, want %d", path, got, want)
				}
			}
			rec, _ := s.LastRequest()
			if rec.Usage != tc.recUsed || !rec.UsageReported {
				t.Errorf("recorded usage %+v (reported %v), want %+v", rec.Usage, rec.UsageReported, tc.recUsed)
			}
			// The same request gets the same answer.
			if again := chat(t, s, hello, scripted...); !bytes.Equal(
				bytes.ReplaceAll(again.body, []byte("fake000002"), []byte("fake000001")), r.body) {
				t.Errorf("second answer differs:\n%s\n%s", r.body, again.body)
			}
		})
	}
}

func TestRequestsAskingForReasoningReportDefaultReasoningTokens(t *testing.T) {
	q := hello
	q.reasoning = true
	for _, kind := range allKinds {
		t.Run(string(kind), func(t *testing.T) {
			s := startFake(t, kind, Options{})
			if r := chat(t, s, q); r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			rec, _ := s.LastRequest()
			want := Usage{InputTokens: 7, OutputTokens: 6 + DefaultReasoningTokens, ReasoningTokens: DefaultReasoningTokens}
			if rec.Usage != want {
				t.Errorf("usage %+v, want %+v", rec.Usage, want)
			}
		})
	}
}

func TestStreamsCarryTheSameTextAndUsage(t *testing.T) {
	q := hello
	q.stream = true
	want := map[Kind]map[string]int{
		OpenAI:      {"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13, "prompt_tokens_details.cached_tokens": 0},
		AzureOpenAI: {"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13},
		Anthropic:   {"input_tokens": 7, "output_tokens": 6, "cache_read_input_tokens": 0},
		Gemini:      {"promptTokenCount": 7, "candidatesTokenCount": 6, "totalTokenCount": 13},
	}
	for _, kind := range allKinds {
		t.Run(string(kind), func(t *testing.T) {
			s := startFake(t, kind, Options{})
			r := chat(t, s, q)
			if r.status != http.StatusOK || r.err != nil {
				t.Fatalf("status %d, err %v: %s", r.status, r.err, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
				t.Errorf("content type %q", ct)
			}
			st := parseStream(t, kind, r.body)
			name := strings.TrimSuffix(string(kind), "_openai")
			if st.text != "fake-"+name+" reply: hello there my friend" {
				t.Errorf("text %q", st.text)
			}
			if !st.done {
				t.Error("no terminal event")
			}
			for k, n := range want[kind] {
				if st.usage[k] != n {
					t.Errorf("usage %s = %d, want %d (usage %v)", k, st.usage[k], n, st.usage)
				}
			}
			rec, _ := s.LastRequest()
			if !rec.UsageReported || rec.Events != len(st.events) || rec.Cut {
				t.Errorf("record: reported %v, events %d (client saw %d), cut %v", rec.UsageReported, rec.Events, len(st.events), rec.Cut)
			}
		})
	}
}

func TestOpenAIStreamSendsUsageOnlyWhenIncludeUsageIsTrue(t *testing.T) {
	s := startFake(t, OpenAI, Options{})
	h := credentials(s)
	for _, tc := range []struct {
		body      string
		wantUsage bool
	}{
		{`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`, false},
		{`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"hi"}]}`, false},
		{`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, true},
	} {
		r := do(t, s, http.MethodPost, "/v1/chat/completions", h, []byte(tc.body))
		events := parseSSE(r.body)
		if last := events[len(events)-1]; last.data != "[DONE]" {
			t.Errorf("%s: last event %q, want [DONE]", tc.body, last.data)
		}
		sawKey := false
		for _, ev := range events[:len(events)-1] {
			_, has := jsonOf(t, []byte(ev.data)).(map[string]any)["usage"]
			sawKey = sawKey || has
		}
		if sawKey != tc.wantUsage {
			t.Errorf("%s: usage key present %v, want %v", tc.body, sawKey, tc.wantUsage)
		}
		final := jsonOf(t, []byte(events[len(events)-2].data))
		if got := get(final, "usage") != nil; got != tc.wantUsage {
			t.Errorf("%s: final usage chunk %v, want %v", tc.body, got, tc.wantUsage)
		}
		if tc.wantUsage && len(get(final, "choices").([]any)) != 0 {
			t.Errorf("the usage chunk has choices: %s", events[len(events)-2].data)
		}
		rec, _ := s.LastRequest()
		if rec.UsageReported != tc.wantUsage {
			t.Errorf("%s: UsageReported %v", tc.body, rec.UsageReported)
		}
	}
}

func TestWrongCredentialsGetTheProvidersAnswer(t *testing.T) {
	cases := []struct {
		kind          Kind
		header        http.Header
		status        int
		path, want    string // a field of the error body and its value
		path2, want2  string
		missingStatus int
	}{
		{OpenAI, http.Header{"Authorization": {"Bearer sk-not-the-right-key-at-all"}}, 401,
			"error.code", "invalid_api_key", "error.type", "invalid_request_error", 401},
		{AzureOpenAI, http.Header{"Api-Key": {"not-the-key"}}, 401,
			"error.code", "401", "error.message", "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.", 401},
		{Anthropic, http.Header{"X-Api-Key": {"sk-ant-wrong"}, "Anthropic-Version": {"2023-06-01"}}, 401,
			"type", "error", "error.type", "authentication_error", 401},
		// Google answers a bad key with 400 INVALID_ARGUMENT, and no key with 403.
		{Gemini, http.Header{"X-Goog-Api-Key": {"AIza-wrong"}}, 400,
			"error.status", "INVALID_ARGUMENT", "error.details.0.reason", "API_KEY_INVALID", 403},
	}
	for _, tc := range cases {
		t.Run(string(tc.kind), func(t *testing.T) {
			s := startFake(t, tc.kind, Options{APIKey: "the-right-key"})
			path, body := hello.build(tc.kind)
			r := do(t, s, http.MethodPost, path, tc.header, body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			v := jsonOf(t, r.body)
			if get(v, tc.path) != tc.want || get(v, tc.path2) != tc.want2 {
				t.Errorf("%s = %v, %s = %v in %s", tc.path, get(v, tc.path), tc.path2, get(v, tc.path2), r.body)
			}
			h := http.Header{}
			if tc.kind == Anthropic {
				h.Set("anthropic-version", "2023-06-01")
			}
			if r := do(t, s, http.MethodPost, path, h, body); r.status != tc.missingStatus {
				t.Errorf("without a credential: status %d, want %d: %s", r.status, tc.missingStatus, r.body)
			}
			// The right key works, and the fake never answered the others.
			h = credentials(s)
			if r := do(t, s, http.MethodPost, path, h, body); r.status != http.StatusOK {
				t.Errorf("right key: status %d: %s", r.status, r.body)
			}
			for _, rec := range s.Requests()[:2] {
				if rec.UsageReported {
					t.Errorf("request %d with a bad credential was answered", rec.Seq)
				}
			}
		})
	}
}

func TestProviderSpecificRequestChecks(t *testing.T) {
	t.Run("Anthropic requires anthropic-version", func(t *testing.T) {
		s := startFake(t, Anthropic, Options{})
		h := credentials(s)
		h.Del("anthropic-version")
		path, body := hello.build(Anthropic)
		r := do(t, s, http.MethodPost, path, h, body)
		if v := jsonOf(t, r.body); r.status != 400 || get(v, "error.message") != "anthropic-version: header is required" {
			t.Errorf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("Anthropic requires max_tokens", func(t *testing.T) {
		s := startFake(t, Anthropic, Options{})
		r := do(t, s, http.MethodPost, "/v1/messages", credentials(s), []byte(`{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"hi"}]}`))
		if v := jsonOf(t, r.body); r.status != 400 || get(v, "error.message") != "max_tokens: Field required" {
			t.Errorf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("Azure requires api-version", func(t *testing.T) {
		s := startFake(t, AzureOpenAI, Options{})
		_, body := hello.build(AzureOpenAI)
		r := do(t, s, http.MethodPost, "/openai/deployments/gpt-4o/chat/completions", credentials(s), body)
		if r.status != 404 || string(r.body) != `{"error":{"code":"404","message":"Resource not found"}}` {
			t.Errorf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("Azure reports the deployment as the model and filter results", func(t *testing.T) {
		s := startFake(t, AzureOpenAI, Options{Models: []string{"prod-gpt"}})
		r := chat(t, s, chatReq{model: "prod-gpt", user: "hi"})
		v := jsonOf(t, r.body)
		if get(v, "model") != "prod-gpt" || get(v, "prompt_filter_results.0.prompt_index") != 0.0 {
			t.Errorf("status %d: %s", r.status, r.body)
		}
		r = chat(t, s, chatReq{model: "other", user: "hi"})
		if v := jsonOf(t, r.body); r.status != 404 || get(v, "error.code") != "DeploymentNotFound" {
			t.Errorf("unknown deployment: status %d: %s", r.status, r.body)
		}
	})
	for _, kind := range allKinds {
		t.Run(string(kind)+" rejects unknown models with 404", func(t *testing.T) {
			s := startFake(t, kind, Options{Models: []string{"only-this"}})
			if r := chat(t, s, chatReq{model: "not-served", user: "hi"}); r.status != http.StatusNotFound {
				t.Errorf("status %d: %s", r.status, r.body)
			}
			if r := chat(t, s, chatReq{model: "only-this", user: "hi"}); r.status != http.StatusOK {
				t.Errorf("served model: status %d: %s", r.status, r.body)
			}
		})
	}
}

func TestScriptedErrorsUseTheProvidersErrorShape(t *testing.T) {
	cases := []struct {
		kind   Kind
		header string
		status int
		fields map[string]any
	}{
		{OpenAI, HeaderStatus, 429, map[string]any{"error.type": "requests", "error.code": "rate_limit_exceeded"}},
		{OpenAI, HeaderError, 500, map[string]any{"error.type": "server_error"}},
		{OpenAI, HeaderError, 400, map[string]any{"error.type": "invalid_request_error"}},
		{OpenAI, HeaderError, 401, map[string]any{"error.code": "invalid_api_key"}},
		{AzureOpenAI, HeaderStatus, 429, map[string]any{"error.code": "429"}},
		{AzureOpenAI, HeaderError, 500, map[string]any{"error.type": "server_error"}},
		{Anthropic, HeaderStatus, 429, map[string]any{"type": "error", "error.type": "rate_limit_error"}},
		{Anthropic, HeaderError, 529, map[string]any{"error.type": "overloaded_error", "error.message": "Overloaded"}},
		{Anthropic, HeaderError, 500, map[string]any{"error.type": "api_error"}},
		{Anthropic, HeaderError, 400, map[string]any{"error.type": "invalid_request_error"}},
		{Anthropic, HeaderError, 401, map[string]any{"error.type": "authentication_error"}},
		{Gemini, HeaderStatus, 429, map[string]any{"error.status": "RESOURCE_EXHAUSTED", "error.code": 429.0,
			"error.details.0.retryDelay": "7s"}},
		{Gemini, HeaderError, 500, map[string]any{"error.status": "INTERNAL"}},
		{Gemini, HeaderError, 503, map[string]any{"error.status": "UNAVAILABLE"}},
	}
	for _, tc := range cases {
		t.Run(string(tc.kind)+" "+http.StatusText(tc.status), func(t *testing.T) {
			s := startFake(t, tc.kind, Options{})
			r := chat(t, s, hello, tc.header, strconv.Itoa(tc.status), HeaderRetryAfter, "7")
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			v := jsonOf(t, r.body)
			for path, want := range tc.fields {
				if got := get(v, path); got != want {
					t.Errorf("%s = %v, want %v in %s", path, got, want, r.body)
				}
			}
			wantRetry := "7"
			if tc.kind == Gemini {
				wantRetry = "" // Google says it in the body
			}
			if got := r.header.Get("Retry-After"); got != wantRetry {
				t.Errorf("Retry-After %q, want %q", got, wantRetry)
			}
		})
	}
}

func TestLatencyIsSpentBeforeTheHeaders(t *testing.T) {
	s := startFake(t, OpenAI, Options{})
	start := time.Now()
	r := chat(t, s, hello, HeaderLatency, "150ms")
	if elapsed := time.Since(start); elapsed < 150*time.Millisecond || r.status != http.StatusOK {
		t.Errorf("answered %d after %v, want 200 after at least 150ms", r.status, elapsed)
	}
}

func TestEventDelaySpacesStreamEvents(t *testing.T) {
	q := hello
	q.stream = true
	for _, kind := range allKinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			s := startFake(t, kind, Options{})
			start := time.Now()
			r := chat(t, s, q, HeaderEventDelay, "20ms")
			n := len(parseSSE(r.body))
			if elapsed, least := time.Since(start), time.Duration(n-1)*20*time.Millisecond; elapsed < least {
				t.Errorf("%d events in %v, want at least %v", n, elapsed, least)
			}
		})
	}
}

func TestCutAfterDropsTheConnectionBeforeTheTerminalEvent(t *testing.T) {
	q := hello
	q.stream = true
	for _, kind := range allKinds {
		t.Run(string(kind), func(t *testing.T) {
			s := startFake(t, kind, Options{})
			r := chat(t, s, q, HeaderCutAfter, "3")
			if r.err == nil || !errors.Is(r.err, io.ErrUnexpectedEOF) {
				t.Errorf("reading the body: err %v, want an unexpected EOF", r.err)
			}
			st := parseStream(t, kind, r.body)
			if len(st.events) != 3 || st.done {
				t.Errorf("client saw %d events (done %v), want 3 and no terminal event:\n%s", len(st.events), st.done, r.body)
			}
			rec, _ := s.LastRequest()
			if !rec.Cut || rec.Events != 3 || rec.UsageReported || rec.End.IsZero() {
				t.Errorf("record: cut %v, events %d, usage reported %v, end %v", rec.Cut, rec.Events, rec.UsageReported, rec.End)
			}
			if rec.Usage.InputTokens != 7 {
				t.Errorf("the record keeps the usage the fake would have reported: %+v", rec.Usage)
			}
		})
	}
	t.Run("non-streaming", func(t *testing.T) {
		s := startFake(t, OpenAI, Options{})
		r := chat(t, s, hello, HeaderCutAfter, "10")
		if len(r.body) != 10 || r.err == nil {
			t.Errorf("got %d bytes, err %v; want 10 bytes and an error", len(r.body), r.err)
		}
	})
	t.Run("more events than the stream has", func(t *testing.T) {
		s := startFake(t, OpenAI, Options{})
		r := chat(t, s, q, HeaderCutAfter, "1000")
		if st := parseStream(t, OpenAI, r.body); r.err != nil || !st.done {
			t.Errorf("err %v, done %v", r.err, st.done)
		}
	})
}

func TestNoUsageLeavesUsageOut(t *testing.T) {
	for _, stream := range []bool{false, true} {
		for _, kind := range allKinds {
			q := hello
			q.stream = stream
			s := startFake(t, kind, Options{})
			r := chat(t, s, q, HeaderNoUsage, "1")
			if r.status != http.StatusOK {
				t.Fatalf("%s: status %d", kind, r.status)
			}
			for _, word := range []string{`"usage"`, `"usageMetadata"`, "prompt_tokens", "input_tokens", "promptTokenCount"} {
				// OpenAI's chunks carry "usage":null when include_usage is set.
				body := bytes.ReplaceAll(r.body, []byte(`"usage":null`), nil)
				if bytes.Contains(body, []byte(word)) {
					t.Errorf("%s stream=%v: the answer mentions %s:\n%s", kind, stream, word, r.body)
				}
			}
			rec, _ := s.LastRequest()
			if rec.UsageReported || rec.Usage.InputTokens != 7 {
				t.Errorf("%s stream=%v: reported %v, usage %+v", kind, stream, rec.UsageReported, rec.Usage)
			}
		}
	}
}

func TestFixedTextAndMaxTokens(t *testing.T) {
	lengthReason := map[Kind]string{OpenAI: "length", AzureOpenAI: "length", Anthropic: "max_tokens", Gemini: "MAX_TOKENS"}
	for _, kind := range allKinds {
		t.Run(string(kind), func(t *testing.T) {
			s := startFake(t, kind, Options{})
			q := hello
			q.stream = true
			st := parseStream(t, kind, chat(t, s, q, HeaderText, "exactly  these words here").body)
			if st.text != "exactly  these words here" {
				t.Errorf("text %q", st.text)
			}
			if rec, _ := s.LastRequest(); rec.Usage.OutputTokens != 4 {
				t.Errorf("output tokens %d, want 4", rec.Usage.OutputTokens)
			}
			q.maxTokens = 2
			st = parseStream(t, kind, chat(t, s, q).body)
			if st.text != "fake-"+strings.TrimSuffix(string(kind), "_openai")+" reply:" || st.finish != lengthReason[kind] {
				t.Errorf("max 2 tokens: text %q, finish %q", st.text, st.finish)
			}
		})
	}
}

func TestMalformedScriptHeadersFailLoudly(t *testing.T) {
	s := startFake(t, Anthropic, Options{})
	r := chat(t, s, hello, HeaderLatency, "soon")
	if v := jsonOf(t, r.body); r.status != 400 || !strings.Contains(get(v, "error.message").(string), "x-fake-latency") {
		t.Errorf("status %d: %s", r.status, r.body)
	}
}

func TestGoScriptingQueueThenScriptThenHeaders(t *testing.T) {
	s := startFake(t, AzureOpenAI, Options{Models: []string{"primary", "secondary"}})
	s.Enqueue(Behavior{Status: 429, RetryAfter: "2"}, Behavior{Text: "second in line"})
	if r := chat(t, s, chatReq{model: "secondary", user: "hi"}, HeaderText, "ignored"); r.status != 429 || r.header.Get("Retry-After") != "2" {
		t.Errorf("first queued: status %d, Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	if r := chat(t, s, chatReq{model: "secondary", user: "hi"}); get(jsonOf(t, r.body), "choices.0.message.content") != "second in line" {
		t.Errorf("second queued: %s", r.body)
	}
	// Only the primary deployment fails: what a fallback test needs.
	s.Script(func(r *Request) *Behavior {
		if r.Model() == "primary" {
			return &Behavior{Status: 503}
		}
		return nil
	})
	if r := chat(t, s, chatReq{model: "primary", user: "hi"}); r.status != 503 {
		t.Errorf("primary: status %d", r.status)
	}
	if r := chat(t, s, chatReq{model: "secondary", user: "hi"}, HeaderText, "from headers"); get(jsonOf(t, r.body), "choices.0.message.content") != "from headers" {
		t.Errorf("secondary falls through to its headers: %s", r.body)
	}
	s.Script(nil)
	if r := chat(t, s, chatReq{model: "primary", user: "hi"}); r.status != 200 {
		t.Errorf("after Script(nil): status %d", r.status)
	}
}

func TestToolCallsWhenTheUserNamesAnOfferedTool(t *testing.T) {
	finish := map[Kind]string{OpenAI: "tool_calls", AzureOpenAI: "tool_calls", Anthropic: "tool_use", Gemini: "STOP"}
	for _, kind := range allKinds {
		t.Run(string(kind), func(t *testing.T) {
			s := startFake(t, kind, Options{})
			q := chatReq{user: "please call get_weather for Paris", tool: "get_weather", stream: true}
			st := parseStream(t, kind, chat(t, s, q).body)
			if st.tool != "get_weather" || st.args != `{"days":1,"location":"fake"}` || st.finish != finish[kind] {
				t.Errorf("tool %q args %q finish %q", st.tool, st.args, st.finish)
			}
			if rec, _ := s.LastRequest(); rec.Usage.OutputTokens != ToolCallTokens {
				t.Errorf("output tokens %d, want %d", rec.Usage.OutputTokens, ToolCallTokens)
			}

			q.stream = false
			v := jsonOf(t, chat(t, s, q).body)
			var name any
			switch kind {
			case OpenAI, AzureOpenAI:
				name = get(v, "choices.0.message.tool_calls.0.function.name")
			case Anthropic:
				name = get(v, "content.0.name")
			case Gemini:
				name = get(v, "candidates.0.content.parts.0.functionCall.name")
			}
			if name != "get_weather" {
				t.Errorf("non-streaming: tool %v", name)
			}

			// No tool named: text. Tool result last: text.
			for _, q := range []chatReq{{user: "what is the weather", tool: "get_weather", stream: true},
				{user: "please call get_weather", tool: "get_weather", toolDone: true, stream: true}} {
				if st := parseStream(t, kind, chat(t, s, q).body); st.tool != "" || st.text == "" {
					t.Errorf("%+v: tool %q, text %q", q, st.tool, st.text)
				}
			}
		})
	}
}

func TestStreamsAreFlushedEventByEvent(t *testing.T) {
	q := hello
	q.stream = true
	for _, kind := range allKinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			s := startFake(t, kind, Options{EventDelay: 50 * time.Millisecond})
			path, body := q.build(kind)
			req, err := http.NewRequest(http.MethodPost, s.URL()+path, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header = credentials(s)
			resp, err := s.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			buf := make([]byte, 1<<16)
			n, err := resp.Body.Read(buf)
			if err != nil || !strings.Contains(string(buf[:n]), "data:") {
				t.Fatalf("first read: %q, %v", buf[:n], err)
			}
			// The first event is here; the fake is still writing the rest.
			rec, _ := s.LastRequest()
			if !rec.End.IsZero() || rec.Events >= 6 {
				t.Errorf("the whole stream was written before the client saw its first event (events %d)", rec.Events)
			}
			rest, err := io.ReadAll(resp.Body)
			if err != nil || !parseStream(t, kind, append(buf[:n], rest...)).done {
				t.Errorf("the stream did not finish: %v", err)
			}
		})
	}
}

func TestEmbeddingsAreDeterministicUnitVectors(t *testing.T) {
	for _, kind := range []Kind{OpenAI, AzureOpenAI} {
		t.Run(string(kind), func(t *testing.T) {
			s := startFake(t, kind, Options{})
			path := "/v1/embeddings"
			if kind == AzureOpenAI {
				path = "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21"
			}
			send := func(body string) any {
				r := do(t, s, http.MethodPost, path, credentials(s), []byte(body))
				if r.status != 200 {
					t.Fatalf("status %d: %s", r.status, r.body)
				}
				return jsonOf(t, r.body)
			}
			v := send(`{"model":"text-embedding-3-small","input":["one two three","four"],"dimensions":4}`)
			if num(v, "usage.prompt_tokens") != 4 || num(v, "usage.total_tokens") != 4 || get(v, "object") != "list" {
				t.Errorf("usage or shape: %v", v)
			}
			vec := get(v, "data.1.embedding").([]any)
			var norm float64
			for _, x := range vec {
				norm += x.(float64) * x.(float64)
			}
			if len(vec) != 4 || math.Abs(norm-1) > 1e-5 {
				t.Errorf("vector %v: length %d, norm² %v", vec, len(vec), norm)
			}
			again := send(`{"model":"text-embedding-3-small","input":"four","dimensions":4}`)
			if !reflect.DeepEqual(get(again, "data.0.embedding"), vec) {
				t.Error("the same input got another vector")
			}
			b64 := send(`{"model":"text-embedding-3-small","input":"four","dimensions":4,"encoding_format":"base64"}`)
			raw, err := base64.StdEncoding.DecodeString(get(b64, "data.0.embedding").(string))
			if err != nil || len(raw) != 16 {
				t.Fatalf("base64 embedding: %v, %d bytes", err, len(raw))
			}
			for i, x := range vec {
				if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])); got != float32(x.(float64)) {
					t.Errorf("component %d: base64 %v, float %v", i, got, x)
				}
			}
			if rec, _ := s.LastRequest(); rec.Usage != (Usage{InputTokens: 1}) || !rec.UsageReported {
				t.Errorf("recorded usage %+v", rec.Usage)
			}
		})
	}
}

func TestModelsList(t *testing.T) {
	s := startFake(t, OpenAI, Options{Models: []string{"gpt-a", "gpt-b"}})
	v := jsonOf(t, do(t, s, http.MethodGet, "/v1/models", credentials(s), nil).body)
	if get(v, "object") != "list" || get(v, "data.0.id") != "gpt-a" || get(v, "data.1.object") != "model" || get(v, "data.2") != nil {
		t.Errorf("list: %v", v)
	}
	if r := do(t, s, http.MethodGet, "/v1/models/gpt-b", credentials(s), nil); get(jsonOf(t, r.body), "id") != "gpt-b" {
		t.Errorf("retrieve: %s", r.body)
	}
	if r := do(t, s, http.MethodGet, "/v1/models/gpt-z", credentials(s), nil); r.status != 404 || get(jsonOf(t, r.body), "error.code") != "model_not_found" {
		t.Errorf("unknown model: %d %s", r.status, r.body)
	}
	g := startFake(t, Gemini, Options{})
	if v := jsonOf(t, do(t, g, http.MethodGet, "/v1beta/models", credentials(g), nil).body); get(v, "models.0.name") != "models/gemini-2.5-flash" {
		t.Errorf("gemini list: %v", v)
	}
}

func TestResponsesAPI(t *testing.T) {
	s := startFake(t, OpenAI, Options{})
	h := credentials(s)
	h.Set(HeaderCachedTokens, "1")
	body := `{"model":"gpt-4o","instructions":"be brief now","input":[{"role":"user","content":[{"type":"input_text","text":"hello there my friend"}]}]}`
	v := jsonOf(t, do(t, s, http.MethodPost, "/v1/responses", h, []byte(body)).body)
	if get(v, "object") != "response" || get(v, "status") != "completed" ||
		get(v, "output.0.content.0.text") != "fake-openai reply: hello there my friend" ||
		num(v, "usage.input_tokens") != 7 || num(v, "usage.input_tokens_details.cached_tokens") != 1 ||
		num(v, "usage.output_tokens") != 6 || num(v, "usage.total_tokens") != 13 {
		t.Errorf("response: %v", v)
	}

	stream := strings.Replace(body, `{"model"`, `{"stream":true,"model"`, 1)
	events := parseSSE(do(t, s, http.MethodPost, "/v1/responses", h, []byte(stream)).body)
	var names []string
	var text string
	for i, ev := range events {
		d := jsonOf(t, []byte(ev.data))
		if get(d, "type") != ev.name || num(d, "sequence_number") != i {
			t.Errorf("event %d %q: %s", i, ev.name, ev.data)
		}
		if ev.name == "response.output_text.delta" {
			text += get(d, "delta").(string)
		}
		if len(names) == 0 || names[len(names)-1] != ev.name {
			names = append(names, ev.name)
		}
	}
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"}
	if !reflect.DeepEqual(names, want) || text != "fake-openai reply: hello there my friend" {
		t.Errorf("events %v, text %q", names, text)
	}
	last := jsonOf(t, []byte(events[len(events)-1].data))
	if num(last, "response.usage.input_tokens") != 7 || num(last, "response.usage.output_tokens") != 6 {
		t.Errorf("completed: %s", events[len(events)-1].data)
	}

	tools := `{"model":"gpt-4o","stream":true,"input":"call lookup now","tools":[{"type":"function","name":"lookup","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}]}`
	var args string
	for _, ev := range parseSSE(do(t, s, http.MethodPost, "/v1/responses", h, []byte(tools)).body) {
		if ev.name == "response.function_call_arguments.delta" {
			args += get(jsonOf(t, []byte(ev.data)), "delta").(string)
		}
	}
	if args != `{"q":"fake"}` {
		t.Errorf("function call arguments %q", args)
	}
}

func TestTLSWithTheTestCA(t *testing.T) {
	s := startFake(t, Anthropic, Options{TLS: true})
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL %s", s.URL())
	}
	if r := chat(t, s, hello); r.status != 200 {
		t.Errorf("Server.Client: status %d", r.status)
	}
	pemBytes, err := CACertPEM()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("CACertPEM is not a PEM certificate")
	}
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err := trusting.Get(s.URL() + "/v1/models")
	if err != nil {
		t.Fatalf("a client trusting CACertPEM: %v", err)
	}
	_ = resp.Body.Close()
	resp, err = (&http.Client{Transport: &http.Transport{}}).Get(s.URL() + "/v1/models")
	if err == nil {
		_ = resp.Body.Close()
		t.Error("a client that does not trust the test CA connected")
	}
}

func TestRequestsAreRecorded(t *testing.T) {
	s := startFake(t, Gemini, Options{})
	chat(t, s, hello, "X-Trace", "abc")
	recs := s.Requests()
	if len(recs) != 1 {
		t.Fatalf("%d requests", len(recs))
	}
	r := recs[0]
	_, body := hello.build(Gemini)
	if r.Method != http.MethodPost || r.Path != "/v1beta/models/gemini-2.5-flash:generateContent" || r.Model() != "gemini-2.5-flash" ||
		r.Header.Get("x-goog-api-key") != s.APIKey() || r.Header.Get("X-Trace") != "abc" || !bytes.Equal(r.Body, body) || r.Status != 200 {
		t.Errorf("recorded %+v", r)
	}
	s.Reset()
	if len(s.Requests()) != 0 {
		t.Error("Reset kept requests")
	}
}

func TestAssertNoTollgateSecrets(t *testing.T) {
	key := "tg-" + strings.Repeat("a1B2", 10) + "xyz"
	clean := Request{Method: "POST", Path: "/v1/messages", Header: http.Header{"X-Api-Key": {"sk-ant-1"}}, Body: []byte(`{"model":"m"}`)}
	cases := []struct {
		name  string
		req   Request
		fails bool
	}{
		{"clean", clean, false},
		{"key in Authorization", Request{Path: "/", Header: http.Header{"Authorization": {"Bearer " + key}}}, true},
		{"key in the body", Request{Path: "/", Body: []byte(`{"user":"` + key + `"}`)}, true},
		{"key in the query", Request{Path: "/", RawQuery: "key=" + key}, true},
		{"display prefix", Request{Path: "/", Body: []byte(`{"note":"tg-7hQ2xK9a"}`)}, true},
		{"internal header", Request{Path: "/", Header: http.Header{"X-Tollgate-Route": {"r1"}}}, true},
		{"admin token", Request{Path: "/", Header: http.Header{"X-Other": {"tgadm-" + strings.Repeat("Z", 43)}}}, true},
	}
	for _, tc := range cases {
		var r recorder
		AssertNoTollgateSecrets(&r, []Request{tc.req})
		if got := len(r.errors) > 0; got != tc.fails {
			t.Errorf("%s: failed %v (%v), want %v", tc.name, got, r.errors, tc.fails)
		}
		for _, e := range r.errors {
			if strings.Contains(e, key) {
				t.Errorf("%s: the failure message shows the whole key: %s", tc.name, e)
			}
		}
	}
	var r recorder
	AssertNoTollgateSecrets(&r, []Request{clean}, "sk-ant-1")
	if len(r.errors) != 1 {
		t.Errorf("an explicit secret: %v", r.errors)
	}

	// Against a live fake: the fake saw only its own credential.
	s := startFake(t, OpenAI, Options{})
	chat(t, s, hello)
	var live recorder
	AssertNoTollgateSecrets(&live, s.Requests())
	if len(live.errors) != 0 {
		t.Errorf("live: %v", live.errors)
	}
}
