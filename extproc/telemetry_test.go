package extproc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate-dev/tollgate/telemetry"
)

// observed is a fixture whose server exports to a real metrics pipeline, a
// span recorder and a debug-level JSON log.
type observed struct {
	*fixture
	tel   *telemetry.Telemetry
	spans *tracetest.SpanRecorder
	logs  *lockedLog
}

type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) lines(t *testing.T) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("a log line is not JSON: %v: %s", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newObserved(t *testing.T, tenantLabels bool) *observed {
	t.Helper()
	tel, err := telemetry.New(t.Context(), telemetry.Options{Service: "extproc-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	logs := &lockedLog{}
	f := newFixture(t)
	// Every try goes to the OpenAI deployment.
	f.cfg.models[0].Deployments = f.cfg.models[0].Deployments[1:]
	f.server = New(Options{Config: f.cfg, Usage: f.usage, Now: func() time.Time { return f.clock },
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Meters: tel.Meters(), Tracers: tp, TenantLabels: tenantLabels})
	return &observed{fixture: f, tel: tel, spans: spans, logs: logs}
}

const (
	okAnswer = `{"id":"c1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}`
	// A client's W3C trace context: ext_proc continues its trace.
	clientTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientParent = "00-" + clientTrace + "-00f067aa0ba902b7-01"
	clientState  = "vendor=client-data"
)

// request sends one chat completion through both streams, with the
// client's traceparent, and returns the request id and the headers the
// try sent to the provider.
func (o *observed) request(t *testing.T) (id string, toProvider map[string]string) {
	t.Helper()
	ds := o.open()
	set, _, _ := mutations(ds.exchange(t, reqHeaders(false, ":method", "POST", ":path", "/v1/chat/completions",
		"x-request-id", "envoy-id", "authorization", "Bearer "+o.key, "traceparent", clientParent, "tracestate", clientState)))
	id = set["x-request-id"]
	ds.exchange(t, reqBody(chatBody))
	us := o.open()
	toProvider, _, _ = mutations(us.exchange(t, upstreamHeaders(openaiD, ":path", "/v1/chat/completions", "x-request-id", id, "traceparent", clientParent)))
	us.exchange(t, respHeaders(false, ":status", "200", "content-type", "application/json"))
	us.exchange(t, respBody(okAnswer, true))
	us.close(t)
	ds.close(t)
	return id, toProvider
}

func (o *observed) gather(t *testing.T) telemetry.Families {
	t.Helper()
	fams, err := o.tel.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// A request's tokens, duration and phases are measured under the GenAI
// semantic conventions' names and attributes, by provider, model and
// status.
func TestRequestMetrics(t *testing.T) {
	o := newObserved(t, false)
	o.request(t)
	fams := o.gather(t)
	base := []string{"gen_ai_operation_name", "chat", "gen_ai_provider_name", "openai", "gen_ai_request_model", "smart", "gen_ai_response_model", "gpt-4o"}
	for typ, want := range map[string]float64{"input": 12, "output": 2} {
		if got, ok := fams.HistogramSum("gen_ai_client_token_usage", append(base, "gen_ai_token_type", typ)...); !ok || got != want {
			t.Errorf("%s tokens = %v (found %v), want %v", typ, got, ok, want)
		}
	}
	if n, ok := fams.Sum("gen_ai_client_operation_duration_seconds", append(base, "http_response_status_code", "200")...); !ok || n != 1 {
		t.Errorf("duration observations = %v (found %v), want 1", n, ok)
	}
	if v := fams.LabelValues("gen_ai_client_operation_duration_seconds", "error_type"); len(v) != 0 {
		t.Errorf("a successful request has error.type %v", v)
	}
	if _, ok := fams.Sum("gen_ai_client_operation_time_to_first_chunk_seconds"); ok {
		t.Error("time to first chunk recorded for a request that did not stream")
	}
	for _, p := range []struct{ stream, phase string }{
		{"downstream", "request_headers"}, {"downstream", "request_body"},
		{"upstream", "request_headers"}, {"upstream", "response_headers"}, {"upstream", "response_body"},
	} {
		if n, ok := fams.Sum("tollgate_extproc_phase_duration_seconds", "tollgate_extproc_stream", p.stream, "tollgate_extproc_phase", p.phase); !ok || n != 1 {
			t.Errorf("%s %s phase observations = %v, want 1", p.stream, p.phase, n)
		}
	}
	if n, ok := fams.Sum("tollgate_extproc_tries_total", "gen_ai_provider_name", "openai", "http_response_status_code", "200"); !ok || n != 1 {
		t.Errorf("tries = %v, want 1", n)
	}
	if n, ok := fams.Sum("tollgate_extproc_requests_in_flight"); !ok || n != 0 {
		t.Errorf("in flight after the request = %v", n)
	}
	if v := fams.LabelValues("gen_ai_client_token_usage", "tollgate_tenant_id"); len(v) != 0 {
		t.Errorf("tenant labels without --metrics-tenant-labels: %v", v)
	}
}

// Refusals are counted by reason; with tenant labels on, by tenant too.
func TestRejectionsByReasonAndTenantLabels(t *testing.T) {
	o := newObserved(t, true)
	ds := o.open()
	ds.exchange(t, reqHeaders(false, ":method", "POST", ":path", "/v1/chat/completions", "authorization", "Bearer tg-not-a-key"))
	ds.close(t)
	ds = o.open()
	ds.exchange(t, reqHeaders(false, ":method", "POST", ":path", "/v1/chat/completions", "authorization", "Bearer "+o.key))
	ds.exchange(t, reqBody(`{"model":"no-such-model","messages":[]}`))
	ds.close(t)
	o.request(t)
	fams := o.gather(t)
	if n, ok := fams.Sum("tollgate_extproc_rejections_total", "tollgate_reason", "invalid_api_key", "http_response_status_code", "401"); !ok || n != 1 {
		t.Errorf("invalid_api_key rejections = %v, want 1", n)
	}
	if n, ok := fams.Sum("tollgate_extproc_rejections_total", "tollgate_reason", "model_not_found", "tollgate_tenant_id", tenantID); !ok || n != 1 {
		t.Errorf("model_not_found rejections of the tenant = %v, want 1", n)
	}
	if n, ok := fams.Sum("gen_ai_client_operation_duration_seconds", "error_type", "model_not_found", "tollgate_tenant_id", tenantID); !ok || n != 1 {
		t.Errorf("refused request durations = %v, want 1 with error.type and tenant", n)
	}
	if got := fams.LabelValues("gen_ai_client_token_usage", "tollgate_tenant_id"); len(got) != 1 || got[0] != tenantID {
		t.Errorf("token usage tenant labels = %v, want [%s]", got, tenantID)
	}
}

// A request's trace continues the client's, has a span per phase and per
// try, and the provider receives the try's span as its parent; no span
// carries content or a credential.
func TestRequestTraceContinuesAndPropagatesTraceContext(t *testing.T) {
	o := newObserved(t, false)
	id, toProvider := o.request(t)
	spans := o.spans.Ended()
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byName[s.Name()] = s
		if s.SpanContext().TraceID().String() != clientTrace {
			t.Errorf("span %q is in trace %s, not the client's", s.Name(), s.SpanContext().TraceID())
		}
		for _, a := range s.Attributes() {
			v := a.Value.String()
			for _, secret := range []string{o.key, "sk-openai-provider", "Capital of France", "Paris", "Be brief"} {
				if strings.Contains(v, secret) {
					t.Errorf("span %q attribute %s carries %q", s.Name(), a.Key, secret)
				}
			}
		}
	}
	root, try := byName["tollgate.request"], byName["chat gpt-4o"]
	if root == nil || try == nil {
		t.Fatalf("spans %v: want tollgate.request and chat gpt-4o", names(spans))
	}
	if root.Parent().SpanID().String() != "00f067aa0ba902b7" || !root.Parent().IsRemote() {
		t.Errorf("the request span's parent is %v, want the client's span", root.Parent())
	}
	if try.Parent().SpanID() != root.SpanContext().SpanID() || try.SpanKind() != trace.SpanKindClient {
		t.Errorf("the try span's parent is %v (kind %v), want the request span", try.Parent(), try.SpanKind())
	}
	for _, n := range []string{"ext_proc request_headers", "ext_proc request_body", "ext_proc response_headers", "ext_proc response_body"} {
		if byName[n] == nil {
			t.Errorf("no span %q among %v", n, names(spans))
		}
	}
	want := "00-" + clientTrace + "-" + try.SpanContext().SpanID().String() + "-01"
	if toProvider["traceparent"] != want {
		t.Errorf("traceparent to the provider = %q, want the try's span %q", toProvider["traceparent"], want)
	}
	// The usage record names the request's span, for the control plane's
	// span of the batch that stores it.
	// The client's tracestate (its own data) is not carried.
	if recs := o.usage.records(); len(recs) != 1 || recs[0].GetTraceContext()["traceparent"] != "00-"+clientTrace+"-"+root.SpanContext().SpanID().String()+"-01" ||
		len(recs[0].GetTraceContext()) != 1 {
		t.Errorf("usage records %v: want one whose trace context names the request span %s, and nothing else", recs, root.SpanContext().SpanID())
	}
	attrs := map[string]string{}
	for _, a := range root.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	for k, v := range map[string]string{"tollgate.request.id": id, "gen_ai.request.model": "smart", "gen_ai.provider.name": "openai",
		"gen_ai.usage.input_tokens": "12", "gen_ai.usage.output_tokens": "2", "http.response.status_code": "200", "tollgate.tenant.id": tenantID} {
		if attrs[k] != v {
			t.Errorf("request span %s = %q, want %q", k, attrs[k], v)
		}
	}
}

// Without a tracer provider ext_proc traces nothing, and its usage records
// carry no trace context, even for a client whose traceparent says sampled.
func TestUntracedRequestRecordsNoTraceContext(t *testing.T) {
	f := newFixture(t)
	f.cfg.models[0].Deployments = f.cfg.models[0].Deployments[1:]
	f.server = New(Options{Config: f.cfg, Usage: f.usage, Now: func() time.Time { return f.clock }})
	(&observed{fixture: f}).request(t)
	if recs := f.usage.records(); len(recs) != 1 || recs[0].GetTraceContext() != nil {
		t.Errorf("usage records %v: want one without trace context", recs)
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// Every log line of a request, at debug level, carries its request id and
// its trace id, and none carries a credential or content.
func TestEveryLogLineOfARequestCarriesItsID(t *testing.T) {
	o := newObserved(t, false)
	id, _ := o.request(t)
	lines := o.logs.lines(t)
	if len(lines) < 4 {
		t.Fatalf("%d log lines for a request at debug level, want its admission, try and end:\n%s", len(lines), o.logs)
	}
	for _, l := range lines {
		if l["request_id"] != id || l["trace_id"] != clientTrace {
			t.Errorf("log line %v: request_id %v, trace_id %v; want %s, %s", l["msg"], l["request_id"], l["trace_id"], id, clientTrace)
		}
	}
	for _, secret := range []string{o.key, "sk-openai-provider", "Capital of France", "Paris", "Be brief"} {
		if strings.Contains(o.logs.String(), secret) {
			t.Errorf("the logs carry %q:\n%s", secret, o.logs)
		}
	}
}
