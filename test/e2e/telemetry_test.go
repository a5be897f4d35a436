package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/telemetry"
	"github.com/tollgate-dev/tollgate/test/fakeprovider"
)

// scrape GETs a /metrics URL as Prometheus would.
func scrape(t *testing.T, url string) telemetry.Families {
	t.Helper()
	resp, err := http.Get(url) //nolint:noctx // loopback, in a test
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	fams, err := telemetry.ParseExposition(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// An SDK's streamed request leaves its metrics on ext_proc's and the
// control plane's /metrics, and its trace at the OTLP receiver: the
// client's trace continued through ext_proc's phases and the try, whose
// span the provider received as its parent.
func TestMetricsAndTracesOfARequest(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		g := startGateway(t, st)
		const traceID = "0af7651916cd43dd8448eb211c80319c"
		before := g.usageCount(t)
		client := g.openai(g.key)
		stream := client.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{
			Model:    "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the capital of France?")},
		}, option.WithHeader("traceparent", "00-"+traceID+"-b7ad6b7169203331-01"))
		var content strings.Builder
		for stream.Next() {
			for _, c := range stream.Current().Choices {
				content.WriteString(c.Delta.Content)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		rec := g.newUsage(t, before, g.fakes[fakeprovider.OpenAI], "gpt-4o-mini")

		// ext_proc's metrics, under the GenAI conventions.
		ep := scrape(t, g.extprocMetrics)
		labels := []string{"gen_ai_provider_name", "openai", "gen_ai_request_model", "gpt-4o-mini", "gen_ai_response_model", "gpt-4o-mini"}
		if in, ok := ep.HistogramSum("gen_ai_client_token_usage", append(labels, "gen_ai_token_type", "input")...); !ok || int64(in) != rec.InputTokens {
			t.Errorf("input tokens in the metrics = %v (found %v), in the usage record %d", in, ok, rec.InputTokens)
		}
		if out, ok := ep.HistogramSum("gen_ai_client_token_usage", append(labels, "gen_ai_token_type", "output")...); !ok || int64(out) != rec.OutputTokens {
			t.Errorf("output tokens in the metrics = %v (found %v), in the usage record %d", out, ok, rec.OutputTokens)
		}
		for _, name := range []string{"gen_ai_client_operation_duration_seconds", "gen_ai_client_operation_time_to_first_chunk_seconds"} {
			if n, ok := ep.Sum(name, append(labels, "http_response_status_code", "200")...); !ok || n < 1 {
				t.Errorf("%s observations = %v (found %v), want the request", name, n, ok)
			}
		}
		for _, phase := range []string{"request_headers", "request_body", "response_headers", "response_body"} {
			if n, ok := ep.Sum("tollgate_extproc_phase_duration_seconds", "tollgate_extproc_stream", "upstream", "tollgate_extproc_phase", phase); phase != "request_body" && (!ok || n < 1) {
				t.Errorf("upstream %s phase observations = %v (found %v)", phase, n, ok)
			}
		}
		if _, ok := ep.Sum("tollgate_usage_queue_records"); !ok {
			t.Error("no usage queue depth on ext_proc's /metrics")
		}
		if _, ok := ep.Sum("tollgate_usage_spill_size_bytes"); !ok {
			t.Error("no usage spill size on ext_proc's /metrics")
		}
		g.eventually(10*time.Second, "the usage record is acknowledged in the metrics", func() error {
			if n, _ := scrape(t, g.extprocMetrics).Sum("tollgate_usage_records_total", "tollgate_outcome", "acked"); n < 1 {
				return fmt.Errorf("acked records %v", n)
			}
			return nil
		})

		// The control plane's: both nodes connected, configuration pushed,
		// the usage record stored in a transaction.
		cp := scrape(t, g.controlPlaneMetrics)
		if n, ok := cp.Sum("tollgate_xds_nodes_connected"); !ok || n < 2 {
			t.Errorf("connected nodes = %v (found %v), want the data plane and ext_proc", n, ok)
		}
		if n, ok := cp.Sum("tollgate_xds_reconcile_duration_seconds", "tollgate_outcome", "published"); !ok || n < 1 {
			t.Errorf("reconciliations = %v (found %v)", n, ok)
		}
		if n, ok := cp.Sum("tollgate_xds_push_duration_seconds"); !ok || n < 1 {
			t.Errorf("pushes = %v (found %v): the configuration made after the nodes connected", n, ok)
		}
		if n, ok := cp.Sum("tollgate_db_transaction_duration_seconds", "tollgate_outcome", "committed"); !ok || n < 1 {
			t.Errorf("committed transactions = %v (found %v)", n, ok)
		}

		// The trace, as the OTLP receiver got it.
		flushCtx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := g.extprocTelemetry.ForceFlush(flushCtx); err != nil {
			t.Fatal(err)
		}
		id, _ := hex.DecodeString(traceID)
		var spans []*tracepb.Span
		g.eventually(10*time.Second, "the request's spans reach the OTLP receiver", func() error {
			spans = g.otlp.trace(id)
			if len(spans) < 2 {
				return fmt.Errorf("%d spans", len(spans))
			}
			return nil
		})
		byName := map[string]*tracepb.Span{}
		for _, s := range spans {
			byName[s.GetName()] = s
			for _, a := range s.GetAttributes() {
				if v := a.GetValue().String(); strings.Contains(v, "capital of France") || (content.Len() > 0 && strings.Contains(v, content.String())) || strings.Contains(v, g.key) {
					t.Errorf("span %s attribute %s carries content or the key: %s", s.GetName(), a.GetKey(), v)
				}
			}
		}
		root, try := byName["tollgate.request"], byName["chat gpt-4o-mini"]
		if root == nil || try == nil {
			t.Fatalf("spans %v: want tollgate.request and chat gpt-4o-mini", spanNames(spans))
		}
		if hex.EncodeToString(root.GetParentSpanId()) != "b7ad6b7169203331" {
			t.Errorf("the request span's parent is %x, want the client's span", root.GetParentSpanId())
		}
		if string(try.GetParentSpanId()) != string(root.GetSpanId()) {
			t.Errorf("the try span's parent is %x, want the request span %x", try.GetParentSpanId(), root.GetSpanId())
		}
		for _, n := range []string{"ext_proc request_headers", "ext_proc request_body", "ext_proc response_headers", "ext_proc response_body"} {
			if byName[n] == nil {
				t.Errorf("no span %q among %v", n, spanNames(spans))
			}
		}
		last, _ := g.fakes[fakeprovider.OpenAI].LastRequest()
		want := "00-" + traceID + "-" + hex.EncodeToString(try.GetSpanId()) + "-01"
		if got := last.Header.Get("traceparent"); got != want {
			t.Errorf("the provider received traceparent %q, want the try's span %q", got, want)
		}

		// The control plane's: the span of the usage batch that stored the
		// request's record is in the request's trace, under its span, with
		// its transaction under it; the admin calls that configured the
		// gateway are server spans naming the operator, without its token.
		var batch *tracepb.Span
		g.eventually(10*time.Second, "the usage batch's span reaches the OTLP receiver", func() error {
			if err := g.controlPlaneTelemetry.ForceFlush(flushCtx); err != nil {
				return err
			}
			for _, s := range g.otlp.trace(id) {
				if s.GetName() == "tollgate.usage.ingest" {
					batch = s
					return nil
				}
			}
			return fmt.Errorf("spans of the trace: %v", spanNames(g.otlp.trace(id)))
		})
		if string(batch.GetParentSpanId()) != string(root.GetSpanId()) {
			t.Errorf("the usage batch's span has parent %x, want the request's span %x", batch.GetParentSpanId(), root.GetSpanId())
		}
		if v, ok := intAttr(batch, "tollgate.usage.records.stored"); !ok || v != 1 {
			t.Errorf("the usage batch stored %d records (found %v), want the request's", v, ok)
		}
		var batchTx bool
		for _, s := range g.otlp.trace(id) {
			batchTx = batchTx || (s.GetName() == "tollgate.db.transaction" && string(s.GetParentSpanId()) == string(batch.GetSpanId()))
		}
		if !batchTx {
			t.Errorf("no transaction span under the usage batch's among %v", spanNames(g.otlp.trace(id)))
		}
		createTenant := false
		g.otlp.mu.Lock()
		for _, s := range g.otlp.spans {
			createTenant = createTenant || (s.GetName() == "tollgate.admin.v1.TenantService/CreateTenant" && s.GetKind() == tracepb.Span_SPAN_KIND_SERVER &&
				strAttr(s, "tollgate.caller.role") == "operator")
		}
		g.otlp.mu.Unlock()
		if !createTenant {
			t.Error("no CreateTenant server span naming the operator among the spans received")
		}
		opToken := strings.TrimPrefix(mdOf(g.op).Get("authorization")[0], "Bearer ")
		text := g.spanText()
		for _, secret := range []string{opToken, g.key} {
			if strings.Contains(text, secret) {
				t.Errorf("a span carries a secret (%.8s…)", secret)
			}
		}

		// The logs: ext_proc's lines about the request carry its request id
		// (the usage record's) and trace id; no line carries the prompt,
		// the answer or the key.
		lines := g.logs.String()
		seen := map[string]bool{}
		for _, line := range strings.Split(lines, "\n") {
			var l map[string]any
			if json.Unmarshal([]byte(line), &l) != nil || l["request_id"] != rec.RequestID || l["msg"] == nil {
				continue
			}
			seen[l["msg"].(string)] = true
			if l["trace_id"] != traceID {
				t.Errorf("log line %q of the request has trace_id %v, want %s", l["msg"], l["trace_id"], traceID)
			}
		}
		for _, msg := range []string{"request admitted", "try started", "try ended", "request finished"} {
			if !seen[msg] {
				t.Errorf("no %q line with the request's id %s among the logs", msg, rec.RequestID)
			}
		}
		for _, secret := range []string{"capital of France", g.key, content.String()} {
			if secret != "" && strings.Contains(lines, secret) {
				t.Errorf("the logs carry %q", secret)
			}
		}
	})
}

// intAttr is span's integer attribute key.
func intAttr(span *tracepb.Span, key string) (int64, bool) {
	for _, a := range span.GetAttributes() {
		if a.GetKey() == key {
			return a.GetValue().GetIntValue(), true
		}
	}
	return 0, false
}

// strAttr is span's string attribute key ("" when it has none).
func strAttr(span *tracepb.Span, key string) string {
	for _, a := range span.GetAttributes() {
		if a.GetKey() == key {
			return a.GetValue().GetStringValue()
		}
	}
	return ""
}

// mdOf is the outgoing metadata of ctx.
func mdOf(ctx context.Context) metadata.MD {
	md, _ := metadata.FromOutgoingContext(ctx)
	return md
}

func spanNames(spans []*tracepb.Span) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.GetName())
	}
	return out
}
