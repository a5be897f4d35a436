package extproc

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
)

const chatBody = `{"model":"smart","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Capital of France?"}]}`

// anthropicAnswer is what the Anthropic deployment answers (its own wire
// format, with cache reads and writes in its usage).
const anthropicAnswer = `{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Paris."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":10,"output_tokens":3}}`

// admit runs the downstream stream of a chat completion through to the
// route choice and returns the stream (still open), the body reply and the
// request id ext_proc gave the request.
func (f *fixture) admit(t *testing.T, body string, extra ...string) (*fakeStream, *extprocv3.ProcessingResponse, string) {
	t.Helper()
	ds := f.open()
	hs := append([]string{":method", "POST", ":path", "/v1/chat/completions", "x-request-id", "client-chosen", "authorization", "Bearer " + f.key}, extra...)
	r := ds.exchange(t, reqHeaders(false, hs...))
	if r.GetImmediateResponse() != nil {
		t.Fatalf("refused at headers: %s", r.GetImmediateResponse().GetBody())
	}
	set, removed, _ := mutations(r)
	id := set["x-request-id"]
	if _, err := uuid.Parse(id); err != nil {
		t.Fatalf("ext_proc set x-request-id %q, want a UUID of its own", id)
	}
	for _, h := range []string{"authorization", "x-api-key"} {
		if !slices.Contains(removed, h) {
			t.Errorf("the client's %s header is not removed: %v", h, removed)
		}
	}
	return ds, ds.exchange(t, reqBody(body)), id
}

func TestChatCompletionThroughAnthropicIsTranslatedCountedAndCosted(t *testing.T) {
	f := newFixture(t)
	ds, r, id := f.admit(t, chatBody)
	set, _, common := mutations(r)
	if set[xdstranslate.RouteHeader] != "model-m1" || !common.GetClearRouteCache() {
		t.Fatalf("route header %q, clear_route_cache %v", set[xdstranslate.RouteHeader], common.GetClearRouteCache())
	}

	// The try: Envoy picked the Anthropic deployment.
	f.clock = f.clock.Add(100 * time.Millisecond)
	us := f.open()
	r = us.exchange(t, upstreamHeaders(anthropicD, ":method", "POST", ":path", "/v1/chat/completions", "x-request-id", id, "accept-encoding", "gzip"))
	set, removed, common := mutations(r)
	if common.GetStatus() != extprocv3.CommonResponse_CONTINUE_AND_REPLACE {
		t.Fatalf("status %v, want CONTINUE_AND_REPLACE", common.GetStatus())
	}
	if set[":path"] != "/v1/messages" || set["x-api-key"] != "sk-ant-provider" || set["anthropic-version"] == "" || set["accept-encoding"] != "identity" {
		t.Errorf("provider headers = %v", set)
	}
	if !slices.Contains(removed, "authorization") {
		t.Errorf("client credential headers not removed on the try: %v", removed)
	}
	var sent map[string]any
	if err := json.Unmarshal(common.GetBodyMutation().GetBody(), &sent); err != nil {
		t.Fatal(err)
	}
	if sent["model"] != "claude-sonnet-4-5" || sent["system"] == nil {
		t.Errorf("translated body = %s", common.GetBodyMutation().GetBody())
	}
	if r.GetModeOverride().GetResponseBodyMode().String() != "STREAMED" {
		t.Errorf("mode override = %v", r.GetModeOverride())
	}

	r = us.exchange(t, respHeaders(false, ":status", "200", "content-type", "application/json", "content-length", "300"))
	set, removed, _ = mutations(r)
	if set["content-type"] != "application/json" || !slices.Contains(removed, "content-length") {
		t.Errorf("response headers: set %v removed %v", set, removed)
	}
	f.clock = f.clock.Add(400 * time.Millisecond)
	half := len(anthropicAnswer) / 2
	r1 := us.exchange(t, respBody(anthropicAnswer[:half], false))
	r2 := us.exchange(t, respBody(anthropicAnswer[half:], true))
	var client []byte
	for _, r := range []*extprocv3.ProcessingResponse{r1, r2} {
		_, _, c := mutations(r)
		client = append(client, c.GetBodyMutation().GetBody()...)
	}
	var chat struct {
		Object  string
		Choices []struct {
			Message      struct{ Content string }
			FinishReason string `json:"finish_reason"`
		}
		Usage struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		}
	}
	if err := json.Unmarshal(client, &chat); err != nil {
		t.Fatalf("client body is not JSON: %v: %s", err, client)
	}
	if chat.Object != "chat.completion" || chat.Choices[0].Message.Content != "Paris." || chat.Choices[0].FinishReason != "stop" || chat.Usage.PromptTokens != 30 {
		t.Errorf("client got %s", client)
	}
	us.close(t)
	f.clock = f.clock.Add(10 * time.Millisecond)
	ds.close(t)

	recs := f.usage.records()
	if len(recs) != 1 {
		t.Fatalf("%d usage records, want 1", len(recs))
	}
	rec := recs[0]
	// 30 input (20 + 10 cache reads), 10 of them cached, 3 output:
	// 20 × $3 + 10 × $0.30 + 3 × $15 per million = 60 + 3 + 45 = 108 µ$.
	if rec.GetRequestId() != id || rec.GetTenantId() != tenantID || rec.GetModel() != "smart" || rec.GetProvider() != "anthropic" ||
		rec.GetUpstreamModel() != "claude-sonnet-4-5" || rec.GetInputTokens() != 30 || rec.GetCachedInputTokens() != 10 ||
		rec.GetOutputTokens() != 3 || rec.GetCostMicros() != 108 || rec.GetEstimated() || rec.GetStatusCode() != 200 || rec.GetErrorType() != "" {
		t.Errorf("usage record = %v", rec)
	}
	if rec.GetLatencyMs() != 510 || rec.GetTtftMs() != 500 {
		t.Errorf("latency %d ms, ttft %d ms; want 510 and 500", rec.GetLatencyMs(), rec.GetTtftMs())
	}
	if f.server.InFlight() != 0 {
		t.Error("the request is still in flight after its stream ended")
	}
}

// A 429 from the first deployment is retried by Envoy on the next one; the
// request's usage is the second try's.
func TestFallbackRecordsTheTryThatAnswered(t *testing.T) {
	f := newFixture(t)
	ds, _, id := f.admit(t, chatBody)

	first := f.open()
	first.exchange(t, upstreamHeaders(anthropicD, ":path", "/v1/chat/completions", "x-request-id", id))
	first.exchange(t, respHeaders(false, ":status", "429", "content-type", "application/json", "retry-after", "1"))
	first.close(t) // Envoy resets the try and retries

	second := f.open()
	r := second.exchange(t, upstreamHeaders(openaiD, ":path", "/v1/chat/completions", "x-request-id", id))
	set, _, common := mutations(r)
	if set[":path"] != "/v1/chat/completions" || set["authorization"] != "Bearer sk-openai-provider" {
		t.Errorf("second try headers = %v", set)
	}
	if !strings.Contains(string(common.GetBodyMutation().GetBody()), `"gpt-4o"`) {
		t.Errorf("second try body = %s", common.GetBodyMutation().GetBody())
	}
	second.exchange(t, respHeaders(false, ":status", "200", "content-type", "application/json"))
	answer := `{"id":"c1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}`
	second.exchange(t, respBody(answer, true))
	second.close(t)
	ds.close(t)

	rec := f.usage.records()[0]
	if rec.GetProvider() != "openai" || rec.GetInputTokens() != 12 || rec.GetOutputTokens() != 2 || rec.GetStatusCode() != 200 {
		t.Errorf("usage record = %v", rec)
	}
}

// A stream cut before its end still gives a usage record, estimated.
func TestCutStreamIsRecordedAsEstimated(t *testing.T) {
	f := newFixture(t)
	ds, _, id := f.admit(t, strings.Replace(chatBody, `"model":"smart"`, `"model":"smart","stream":true`, 1))
	us := f.open()
	us.exchange(t, upstreamHeaders(anthropicD, ":path", "/v1/chat/completions", "x-request-id", id))
	us.exchange(t, respHeaders(false, ":status", "200", "content-type", "text/event-stream"))
	r := us.exchange(t, respBody("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"usage\":{\"input_tokens\":40,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Paris is the capital of France, a country in\"}}\n\n", false))
	_, _, common := mutations(r)
	if !strings.Contains(string(common.GetBodyMutation().GetBody()), "chat.completion.chunk") {
		t.Errorf("the stream is not translated chunk by chunk: %s", common.GetBodyMutation().GetBody())
	}
	us.close(t) // cut: no message_stop
	ds.close(t)
	rec := f.usage.records()[0]
	if !rec.GetEstimated() || rec.GetErrorType() != "incomplete_response" || rec.GetInputTokens() != 40 || rec.GetOutputTokens() < 1 || !rec.GetStreamed() {
		t.Errorf("usage record = %v", rec)
	}
}

func TestRefusals(t *testing.T) {
	expired := timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, c := range []struct {
		name    string
		setup   func(f *fixture)
		headers func(f *fixture) []string
		body    string // sent when the headers pass
		status  int
		code    string
		shape   string // "openai" or "anthropic"
		record  bool   // a usage record is written (the tenant is known)
	}{
		{name: "no key", headers: func(f *fixture) []string { return []string{":method", "POST", ":path", "/v1/chat/completions"} }, status: 401, code: "missing_api_key", shape: "openai"},
		{name: "no key, Anthropic client", headers: func(f *fixture) []string { return []string{":method", "POST", ":path", "/v1/messages"} }, status: 401, shape: "anthropic"},
		{name: "malformed key", headers: func(f *fixture) []string {
			return []string{":method", "POST", ":path", "/v1/chat/completions", "authorization", "Bearer sk-not-ours"}
		}, status: 401, code: "invalid_api_key", shape: "openai"},
		{name: "unknown key", headers: func(f *fixture) []string {
			return []string{":method", "POST", ":path", "/v1/chat/completions", "authorization", "Bearer tg-" + strings.Repeat("A", 43)}
		}, status: 401, code: "invalid_api_key", shape: "openai"},
		{name: "expired key", setup: func(f *fixture) {
			for _, k := range f.cfg.keys {
				k.ExpireTime = expired
			}
		}, status: 401, code: "expired_api_key", shape: "openai"},
		{name: "suspended tenant", setup: func(f *fixture) { f.cfg.tenants[tenantID].Status = configv1.TenantStatus_TENANT_STATUS_SUSPENDED }, status: 403, code: "account_suspended", shape: "openai", record: true},
		{name: "restricted tenant", setup: func(f *fixture) { f.cfg.tenants[tenantID].Status = configv1.TenantStatus_TENANT_STATUS_RESTRICTED }, status: 403, code: "processing_restricted", shape: "openai", record: true},
		{name: "key of a restricted account", setup: func(f *fixture) {
			for _, k := range f.cfg.keys {
				k.AccountRestricted = true
			}
		}, status: 403, code: "processing_restricted", shape: "openai", record: true},
		{name: "key of a restricted account, Anthropic client", setup: func(f *fixture) {
			for _, k := range f.cfg.keys {
				k.AccountRestricted = true
			}
		}, headers: func(f *fixture) []string {
			return []string{":method", "POST", ":path", "/v1/messages", "x-api-key", f.key}
		}, status: 403, shape: "anthropic", record: true},
		{name: "unknown path", headers: func(f *fixture) []string {
			return []string{":method", "POST", ":path", "/v1/completions", "authorization", "Bearer " + f.key}
		}, status: 404, code: "unknown_url", shape: "openai"},
		{name: "wrong method", headers: func(f *fixture) []string {
			return []string{":method", "GET", ":path", "/v1/chat/completions", "authorization", "Bearer " + f.key}
		}, status: 405, code: "method_not_allowed", shape: "openai"},
		{name: "not ready", setup: func(f *fixture) { f.cfg.ready = make(chan struct{}) }, status: 503, code: "starting", shape: "openai"},
		{name: "invalid JSON", body: `{"model":`, status: 400, code: "invalid_json", shape: "openai", record: true},
		{name: "no model", body: `{"messages":[]}`, status: 400, code: "missing_required_parameter", shape: "openai", record: true},
		{name: "unknown model", body: `{"model":"gpt-9","messages":[]}`, status: 404, code: "model_not_found", shape: "openai", record: true},
		{name: "model not allowed for the key", setup: func(f *fixture) {
			for _, k := range f.cfg.keys {
				k.AllowedModels = []string{"other"}
			}
		}, body: chatBody, status: 403, code: "model_not_allowed", shape: "openai", record: true},
		{name: "model denied by the tenant", setup: func(f *fixture) {
			f.cfg.tenants[tenantID].Policy = &configv1.Policy{DeniedModels: []string{"smart"}}
		}, body: chatBody, status: 403, code: "model_not_allowed", shape: "openai", record: true},
		{name: "untranslatable for the first deployment", body: `{"model":"smart","n":3,"messages":[{"role":"user","content":"hi"}]}`, status: 400, shape: "openai", record: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			if c.setup != nil {
				c.setup(f)
			}
			hs := []string{":method", "POST", ":path", "/v1/chat/completions", "x-request-id", "r", "authorization", "Bearer " + f.key}
			if c.headers != nil {
				hs = c.headers(f)
			}
			ds := f.open()
			r := ds.exchange(t, reqHeaders(false, hs...))
			if r.GetImmediateResponse() == nil {
				if c.body == "" {
					t.Fatalf("headers passed: %v", r)
				}
				r = ds.exchange(t, reqBody(c.body))
			}
			status, body := immediateOf(t, r)
			if status != c.status {
				t.Errorf("status %d, want %d: %v", status, c.status, body)
			}
			switch c.shape {
			case "openai":
				e, _ := body["error"].(map[string]any)
				if e == nil || e["message"] == "" || e["type"] == nil {
					t.Errorf("not the OpenAI error shape: %v", body)
				}
				if c.code != "" && e["code"] != c.code {
					t.Errorf("code %v, want %s", e["code"], c.code)
				}
			case "anthropic":
				if body["type"] != "error" || body["error"] == nil {
					t.Errorf("not the Anthropic error shape: %v", body)
				}
			}
			if err := <-ds.done; err != nil {
				t.Errorf("the processor returned %v", err)
			}
			if got := len(f.usage.records()); (got == 1) != c.record {
				t.Errorf("%d usage records, want record=%v", got, c.record)
			}
			if c.record {
				rec := f.usage.records()[0]
				if rec.GetStatusCode() != int32(c.status) || rec.GetInputTokens() != 0 || rec.GetCostMicros() != 0 {
					t.Errorf("refusal record = %v", rec)
				}
			}
		})
	}
}

func TestModelsAreListedFromConfigForTheKey(t *testing.T) {
	f := newFixture(t)
	f.cfg.models = append(f.cfg.models, &configv1.Model{ModelId: "m2", Name: "cheap", Route: "model-m2"})
	for _, k := range f.cfg.keys {
		k.AllowedModels = []string{"cheap"}
	}
	ds := f.open()
	status, body := immediateOf(t, ds.exchange(t, reqHeaders(true, ":method", "GET", ":path", "/v1/models", "authorization", "Bearer "+f.key)))
	data, _ := body["data"].([]any)
	if status != 200 || body["object"] != "list" || len(data) != 1 || data[0].(map[string]any)["id"] != "cheap" {
		t.Errorf("GET /v1/models = %d %v", status, body)
	}
	ds = f.open()
	status, body = immediateOf(t, ds.exchange(t, reqHeaders(true, ":method", "GET", ":path", "/v1/models", "x-api-key", f.key, "anthropic-version", "2023-06-01")))
	data, _ = body["data"].([]any)
	if status != 200 || len(data) != 1 || data[0].(map[string]any)["type"] != "model" {
		t.Errorf("Anthropic GET /v1/models = %d %v", status, body)
	}
	ds = f.open()
	status, _ = immediateOf(t, ds.exchange(t, reqHeaders(true, ":method", "GET", ":path", "/v1/models/smart", "authorization", "Bearer "+f.key)))
	if status != 404 {
		t.Errorf("GET a model the key may not use: %d, want 404", status)
	}
	if n := len(f.usage.records()); n != 0 {
		t.Errorf("model listings wrote %d usage records", n)
	}
}

func TestUpstreamWithoutItsRequestFailsClearly(t *testing.T) {
	f := newFixture(t)
	us := f.open()
	status, body := immediateOf(t, us.exchange(t, upstreamHeaders(anthropicD, ":path", "/v1/chat/completions", "x-request-id", "nobody")))
	if status != 500 || !strings.Contains(body["error"].(map[string]any)["message"].(string), "lost track") {
		t.Errorf("%d %v", status, body)
	}
}

// A request whose body never reaches ext_proc (Envoy answered 413 while
// buffering it, or the client left) is recorded as such, not as a request
// that found no provider.
func TestRequestEndingBeforeItsBodyIsRecordedAsSuch(t *testing.T) {
	f := newFixture(t)
	ds := f.open()
	r := ds.exchange(t, reqHeaders(false, ":method", "POST", ":path", "/v1/messages", "authorization", "Bearer "+f.key))
	if r.GetImmediateResponse() != nil {
		t.Fatalf("refused at headers: %s", r.GetImmediateResponse().GetBody())
	}
	ds.close(t)
	recs := f.usage.records()
	if len(recs) != 1 {
		t.Fatalf("%d usage records, want 1", len(recs))
	}
	if r := recs[0]; r.GetErrorType() != "no_request_body" || r.GetStatusCode() != 0 || r.GetModel() != "" || r.GetCostMicros() != 0 {
		t.Errorf("usage record = %v", r)
	}
}

// Envoy (since 1.37) ends the downstream stream right after the response
// headers, while the body still streams through the try: the usage record
// waits for the try and carries its full usage.
func TestDownstreamEndingBeforeTheStreamStillRecordsItsUsage(t *testing.T) {
	f := newFixture(t)
	ds, _, id := f.admit(t, strings.Replace(chatBody, `"model":"smart"`, `"model":"smart","stream":true`, 1))
	us := f.open()
	us.exchange(t, upstreamHeaders(anthropicD, ":path", "/v1/chat/completions", "x-request-id", id))
	us.exchange(t, respHeaders(false, ":status", "200", "content-type", "text/event-stream"))
	ds.exchange(t, respHeaders(false, ":status", "200", "content-type", "text/event-stream"))
	ds.close(t) // the body has not streamed yet
	if n := len(f.usage.records()); n != 0 {
		t.Fatalf("%d records written before the stream ended", n)
	}
	events := []string{
		`{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"usage":{"input_tokens":40,"output_tokens":1}}}`,
		`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Paris."}}`,
		`{"type":"content_block_stop","index":0}`,
		`{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":7}}`,
		`{"type":"message_stop"}`,
	}
	for i, e := range events {
		var name struct{ Type string }
		_ = json.Unmarshal([]byte(e), &name)
		us.exchange(t, respBody("event: "+name.Type+"\ndata: "+e+"\n\n", i == len(events)-1))
	}
	us.close(t)
	recs := f.usage.records()
	if len(recs) != 1 {
		t.Fatalf("%d usage records, want 1", len(recs))
	}
	if r := recs[0]; r.GetInputTokens() != 40 || r.GetOutputTokens() != 7 || r.GetEstimated() || r.GetErrorType() != "" {
		t.Errorf("usage record = %v; want the stream's final usage", r)
	}
}
