package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
)

// tracedMux is a console-like mux behind HTTPServerTraces, recording
// every span (new traces are never sampled: only a caller's sampled
// traceparent makes a span that is kept).
func tracedMux(t *testing.T, sample sdktrace.Sampler) (http.Handler, *tracetest.SpanRecorder, *oteltrace.SpanContext) {
	t.Helper()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(sample))
	var inHandler oteltrace.SpanContext
	m := http.NewServeMux()
	m.HandleFunc("GET /t/{tenant}/keys/{id}", func(w http.ResponseWriter, r *http.Request) {
		inHandler = oteltrace.SpanContextFromContext(r.Context())
		_, _ = fmt.Fprintf(w, "key %s of %s", r.PathValue("id"), r.PathValue("tenant"))
	})
	m.HandleFunc("POST /t/{tenant}/people", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "the store is down", http.StatusServiceUnavailable)
	})
	m.HandleFunc("GET /static/", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("body{}")) })
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	m.HandleFunc("/", http.NotFound)
	return HTTPServerTraces(tp, m, "/static/", "/healthz"), spans, &inHandler
}

func serve(h http.Handler, method, target string, header http.Header, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func attrsOf(s sdktrace.ReadOnlySpan) map[string]string {
	out := map[string]string{}
	for _, a := range s.Attributes() {
		out[string(a.Key)] = a.Value.String()
	}
	return out
}

// A request is a server span named for its method and route pattern that
// continues the caller's trace, is the parent of what the handler does, and
// holds none of the path's ids nor the query.
func TestHTTPServerTracesNameSpansForTheRoute(t *testing.T) {
	h, spans, inHandler := tracedMux(t, sdktrace.ParentBased(sdktrace.NeverSample()))
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	const tenant, key, query = "acme-corp", "0b9f5a52-3f0e-4c55-9d3b-3c1f0d7e3a11", "ada.lovelace@example.com"
	hdr := http.Header{"Traceparent": {"00-" + traceID + "-" + parentID + "-01"}}
	if w := serve(h, http.MethodGet, "/t/"+tenant+"/keys/"+key+"?q="+query, hdr, ""); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	ended := spans.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans, want 1", len(ended))
	}
	s := ended[0]
	if s.Name() != "GET /t/{tenant}/keys/{id}" || s.SpanKind() != oteltrace.SpanKindServer {
		t.Errorf("span %q of kind %v, want the server span GET /t/{tenant}/keys/{id}", s.Name(), s.SpanKind())
	}
	if got := s.SpanContext().TraceID().String(); got != traceID || s.Parent().SpanID().String() != parentID || !s.Parent().IsRemote() {
		t.Errorf("span in trace %s under %s, want the caller's %s under %s", got, s.Parent().SpanID(), traceID, parentID)
	}
	if !inHandler.Equal(s.SpanContext()) {
		t.Errorf("the handler's context holds span %v, want the request's %v", inHandler.SpanID(), s.SpanContext().SpanID())
	}
	want := map[string]string{"http.request.method": "GET", "http.route": "/t/{tenant}/keys/{id}", "http.response.status_code": "200"}
	got := attrsOf(s)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("attribute %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("attributes %v, want only %v", got, want)
	}
	if s.Status().Code == codes.Error {
		t.Errorf("a 200 has status %v", s.Status())
	}
	text := fmt.Sprint(s.Name(), s.Attributes(), s.Status(), s.Events())
	for _, part := range []string{tenant, key, query, "ada.lovelace"} {
		if strings.Contains(text, part) {
			t.Errorf("the span holds %q of the request's path or query: %s", part, text)
		}
	}
}

// A 5xx is an error (a 4xx is the client's and is not); the mux's redirect
// to a canonical path is named for the route it leads to; CONNECT has no
// route (the mux may set its path as Pattern); a method outside HTTP's is
// "_OTHER"; static files and health checks get no span.
func TestHTTPServerTracesStatusRedirectsAndUntraced(t *testing.T) {
	h, spans, _ := tracedMux(t, sdktrace.AlwaysSample())
	for _, c := range []struct{ method, target string }{
		{http.MethodGet, "/static/app.css"},
		{http.MethodGet, "/static/img/logo.svg?v=3"},
		{http.MethodGet, "/healthz"},
	} {
		if w := serve(h, c.method, c.target, nil, ""); w.Code != http.StatusOK {
			t.Fatalf("%s %s: status %d", c.method, c.target, w.Code)
		}
	}
	if n := len(spans.Ended()); n != 0 {
		t.Fatalf("static files and health checks made %d spans, want none", n)
	}

	w := serve(h, http.MethodPost, "/t/acme/people", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, "email=ada%40example.com&name=Ada")
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d", w.Code)
	}
	if w := serve(h, http.MethodGet, "/t/acme/nothing-here", nil, ""); w.Code != http.StatusNotFound {
		t.Fatalf("status %d", w.Code)
	}
	if w := serve(h, http.MethodGet, "/t/acme//keys/k-42", nil, ""); w.Code != http.StatusTemporaryRedirect {
		t.Fatalf("an unclean path: status %d, want the mux's redirect", w.Code)
	}
	if w := serve(h, http.MethodConnect, "/t/acme/keys/k-42/", nil, ""); w.Code != http.StatusNotFound {
		t.Fatalf("CONNECT: status %d", w.Code)
	}
	if w := serve(h, "BREW", "/t/acme/keys/k-42", nil, ""); w.Code != http.StatusNotFound {
		t.Fatalf("status %d", w.Code)
	}
	ended := spans.Ended()
	if len(ended) != 5 {
		t.Fatalf("%d spans, want 5", len(ended))
	}
	type want struct {
		name, route, method, status string
		failed                      bool
	}
	for i, w := range []want{
		{"POST /t/{tenant}/people", "/t/{tenant}/people", "POST", "503", true},
		{"GET /", "/", "GET", "404", false},
		{"GET /t/{tenant}/keys/{id}", "/t/{tenant}/keys/{id}", "GET", "307", false},
		{"CONNECT", "", "CONNECT", "404", false},
		{"HTTP /", "/", "_OTHER", "404", false},
	} {
		s := ended[i]
		a := attrsOf(s)
		if s.Name() != w.name || a["http.route"] != w.route || a["http.request.method"] != w.method || a["http.response.status_code"] != w.status {
			t.Errorf("span %d: %q %v, want %q with route %q, method %s and status %s", i, s.Name(), a, w.name, w.route, w.method, w.status)
		}
		if failed := s.Status().Code == codes.Error; failed != w.failed || (a["error.type"] != "") != w.failed {
			t.Errorf("span %s (%s): status %v, error.type %q; want an error: %v", s.Name(), w.status, s.Status(), a["error.type"], w.failed)
		}
		text := fmt.Sprint(s.Name(), s.Attributes(), s.Status(), s.Events())
		for _, part := range []string{"acme", "k-42", "ada", "store is down"} {
			if strings.Contains(text, part) {
				t.Errorf("span %s holds %q: %s", s.Name(), part, text)
			}
		}
	}
}

// The middleware's cost per request, sampled (a span recorded) and not
// (the ratio sampler said no), against the bare mux.
func BenchmarkHTTPServerTraces(b *testing.B) {
	m := http.NewServeMux()
	m.HandleFunc("GET /t/{tenant}/keys/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, c := range []struct {
		name string
		h    http.Handler
	}{
		{"bare", m},
		{"unsampled", HTTPServerTraces(sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample())), m)},
		{"sampled", HTTPServerTraces(sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(discardSpans{})), m)},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "/t/acme/keys/k-42", nil)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				c.h.ServeHTTP(w, r)
			}
		})
	}
}

// discardSpans takes ended spans and drops them, as an exporter would
// after its batch.
type discardSpans struct{}

func (discardSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (discardSpans) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (discardSpans) Shutdown(context.Context) error                  { return nil }
func (discardSpans) ForceFlush(context.Context) error                { return nil }
