package extproc

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	"github.com/tollgate-dev/tollgate/telemetry"
)

// benchRequest drives one request through both streams as Envoy would:
// downstream headers and body, one try with its response, the end.
func benchRequest(b *testing.B, f *fixture, id, body string, respCT string, chunks []string) {
	ds := f.open()
	first := reqHeaders(false, ":method", "POST", ":path", "/v1/chat/completions", "x-request-id", id, "authorization", "Bearer "+f.key)
	first.Attributes = attrs("source.address", "10.0.0.7:53124")
	set, _, _ := mutations(ds.exchange(b, first))
	id = set["x-request-id"] // the try sees the id ext_proc gave the request
	ds.exchange(b, reqBody(body))
	us := f.open()
	us.exchange(b, upstreamHeaders(openaiD, ":path", "/v1/chat/completions", "x-request-id", id))
	us.exchange(b, respHeaders(false, ":status", "200", "content-type", respCT))
	for i, c := range chunks {
		us.exchange(b, respBody(c, i == len(chunks)-1))
	}
	us.close(b)
	ds.close(b)
}

func benchFixture(b *testing.B) *fixture {
	f := newFixture(b)
	// Route every try to the OpenAI deployment: passthrough, the common case.
	f.cfg.models[0].Deployments = f.cfg.models[0].Deployments[1:]
	return f
}

// BenchmarkNonStreamingRequest is the whole exchange of one non-streaming
// chat completion (both streams, every message), in process.
func BenchmarkNonStreamingRequest(b *testing.B) {
	f := benchFixture(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		benchRequest(b, f, fmt.Sprint("r", i), chatBody, "application/json", []string{benchAnswer})
	}
}

// benchAnswer is the provider's answer to a non-streaming request.
const benchAnswer = `{"id":"c1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}`

// streamChunks are a streamed answer of 200 SSE chunks, one event each,
// then the usage and [DONE].
func streamChunks() []string {
	chunks := make([]string, 0, 202)
	for range 200 {
		chunks = append(chunks, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}`+"\n\n")
	}
	return append(chunks, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":200,"total_tokens":212}}`+"\n\n", "data: [DONE]\n\n")
}

// BenchmarkStreamingRequest200Chunks is a streamed completion of 200 SSE
// chunks, one event each.
func BenchmarkStreamingRequest200Chunks(b *testing.B) {
	f := benchFixture(b)
	body := strings.Replace(chatBody, `"model":"smart"`, `"model":"smart","stream":true`, 1)
	chunks := streamChunks()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		benchRequest(b, f, fmt.Sprint("r", i), body, "text/event-stream", chunks)
	}
}

// BenchmarkNonStreamingRequestWithPolicies is BenchmarkNonStreamingRequest
// with every limit set on the tenant and the key (rates, concurrency, three
// budgets, allow lists): compare the two in one run for the cost of policy.
func BenchmarkNonStreamingRequestWithPolicies(b *testing.B) {
	f := benchFixture(b)
	withQuota(f)
	big := int64(1 << 50)
	policy := &configv1.Policy{
		RequestsPerMinute: &big, TokensPerMinute: &big, ConcurrentRequests: &big, MaxOutputTokens: &big,
		AllowedModels: []string{"smart"}, AllowedProviders: []string{"openai"}, AllowedCidrs: []string{"0.0.0.0/0"},
		Budgets: []*configv1.Budget{
			{Period: configv1.BudgetPeriod_BUDGET_PERIOD_DAY, HardLimitMicros: &big, SoftLimitMicros: &big},
			{Period: configv1.BudgetPeriod_BUDGET_PERIOD_MONTH, HardLimitMicros: &big},
			{Period: configv1.BudgetPeriod_BUDGET_PERIOD_TOTAL, HardLimitMicros: &big},
		},
	}
	f.cfg.tenants[tenantID].Policy = policy
	for _, k := range f.cfg.keys {
		k.Policy = policy
	}
	answer := `{"id":"c1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}`
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		benchRequest(b, f, fmt.Sprint("r", i), chatBody, "application/json", []string{answer})
	}
}

// BenchmarkRedaction is BenchmarkNonStreamingRequest with the tenant's
// redaction off and on, for a short prompt and a ~9 KB one (prose, code
// and numbers, with an e-mail address, a phone number and a card number
// to replace): compare off and on in one run for the cost of redaction.
func BenchmarkRedaction(b *testing.B) {
	answer := `{"id":"c1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Done."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13}}`
	long := strings.Repeat("The quarterly report (v2.3, 2024-01-15) lists 1,234 orders; see https://example.com/r/12345 and call getUserAccountSettings(42). ", 70) +
		"Contact ada@example.com or +49 30 1234567, card 4111 1111 1111 1111."
	prompts := []struct{ name, body string }{
		{"short", chatBody},
		{"9KB", `{"model":"smart","messages":[{"role":"system","content":"Summarize."},{"role":"user","content":"` + long + `"}]}`},
	}
	for _, p := range prompts {
		for _, on := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/redact=%v", p.name, on), func(b *testing.B) {
				f := benchFixture(b)
				f.cfg.tenants[tenantID].Policy = &configv1.Policy{Redact: on}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					i++
					benchRequest(b, f, fmt.Sprint("r", i), p.body, "application/json", []string{answer})
				}
			})
		}
	}
}

// observedBenchFixture is benchFixture exporting metrics as `tollgate
// extproc` does (the OpenTelemetry SDK and its Prometheus exporter), and,
// when traced, sampling every request into spans that a batch processor
// hands to an exporter that drops them.
func observedBenchFixture(b *testing.B, traced bool) *fixture {
	f := benchFixture(b)
	tel, err := telemetry.New(b.Context(), telemetry.Options{Service: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	var tp trace.TracerProvider = tracenoop.NewTracerProvider()
	if traced {
		sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardSpans{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
		b.Cleanup(func() { _ = sdk.Shutdown(context.Background()) })
		tp = sdk
	}
	f.server = New(Options{Config: f.cfg, Usage: f.usage, Now: func() time.Time { return f.clock }, Meters: tel.Meters(), Tracers: tp})
	return f
}

type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

// BenchmarkNonStreamingRequestMetrics is BenchmarkNonStreamingRequest with
// metrics exported and tracing off (no --otlp-endpoint): the default.
func BenchmarkNonStreamingRequestMetrics(b *testing.B) {
	benchObserved(b, false, false)
}

// BenchmarkNonStreamingRequestTraced adds a sampled trace per request.
func BenchmarkNonStreamingRequestTraced(b *testing.B) {
	benchObserved(b, false, true)
}

// BenchmarkStreamingRequest200ChunksMetrics is
// BenchmarkStreamingRequest200Chunks with metrics exported.
func BenchmarkStreamingRequest200ChunksMetrics(b *testing.B) {
	benchObserved(b, true, false)
}

// BenchmarkStreamingRequest200ChunksTraced adds a sampled trace per request.
func BenchmarkStreamingRequest200ChunksTraced(b *testing.B) {
	benchObserved(b, true, true)
}

func benchObserved(b *testing.B, streamed, traced bool) {
	f := observedBenchFixture(b, traced)
	body, ct, chunks := chatBody, "application/json", []string{benchAnswer}
	if streamed {
		body = strings.Replace(chatBody, `"model":"smart"`, `"model":"smart","stream":true`, 1)
		ct, chunks = "text/event-stream", streamChunks()
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		benchRequest(b, f, fmt.Sprint("r", i), body, ct, chunks)
	}
}
