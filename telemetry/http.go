package telemetry

import (
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// HTTPServerTraces wraps next, a handler that routes with an
// http.ServeMux, so that each request it serves is a server span in tp,
// named for the method and the route pattern that served it
// ("GET /t/{tenant}/keys/{id}", OpenTelemetry's HTTP conventions), with
// http.request.method, http.route and http.response.status_code; a 5xx
// answer is an error. A W3C trace context in the request's headers
// (traceparent, tracestate) makes the span its caller's child, and the
// sampler follows the caller's decision, as for gRPC calls. The span is in
// the context next's handlers see, so their outgoing calls can join it.
//
// The span never holds the request's path or query, nor any header or form
// value: paths hold ids and queries hold filters. The route is read from
// the request's Pattern once next returns (ServeMux sets it on the request
// it routes, so next must hand the mux the request it was given); a request
// no pattern matched gets a span named for its method alone.
//
// Requests whose path is one of untraced, or starts with one that ends in a
// slash (a subtree, as ServeMux reads patterns), get no span: a page's
// static files or a probe's checks would each start a trace.
func HTTPServerTraces(tp trace.TracerProvider, next http.Handler, untraced ...string) http.Handler {
	return &httpTraces{
		tracer:   tp.Tracer("github.com/tollgate-dev/tollgate/telemetry"),
		next:     next,
		untraced: untraced,
		prop:     Propagator(),
	}
}

type httpTraces struct {
	tracer   trace.Tracer
	next     http.Handler
	untraced []string
	prop     propagation.TextMapPropagator
}

func (h *httpTraces) skip(path string) bool {
	for _, u := range h.untraced {
		if path == u || (strings.HasSuffix(u, "/") && strings.HasPrefix(path, u)) {
			return true
		}
	}
	return false
}

func (h *httpTraces) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.skip(r.URL.Path) {
		h.next.ServeHTTP(w, r)
		return
	}
	method := knownMethod(r.Method)
	ctx := h.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := h.tracer.Start(ctx, spanMethod(method), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", method)))
	sw := &statusWriter{ResponseWriter: w}
	r = r.WithContext(ctx)
	defer func() {
		if p := recover(); p != nil {
			// net/http answers a panicking handler by closing the
			// connection; the span records the failure and the panic goes on.
			span.SetStatus(codes.Error, "")
			span.SetAttributes(attribute.String("error.type", "panic"))
			span.End()
			panic(p)
		}
		if route, ok := routeOf(r); ok {
			span.SetName(spanMethod(method) + " " + route)
			span.SetAttributes(attribute.String("http.route", route))
		}
		status := sw.code()
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, "")
			span.SetAttributes(attribute.String("error.type", strconv.Itoa(status)))
		}
		span.End()
	}()
	h.next.ServeHTTP(sw, r)
}

// routeOf is the route of the pattern ServeMux set on r ("GET /t/{tenant}"
// → "/t/{tenant}"). For a CONNECT request that the mux redirects from /tree
// to /tree/, Pattern is the request's path, which may hold ids: CONNECT has
// no route.
func routeOf(r *http.Request) (string, bool) {
	pattern := r.Pattern
	if pattern == "" || r.Method == http.MethodConnect {
		return "", false
	}
	// A pattern is [METHOD ][HOST]/[PATH]; the route is what follows the
	// method.
	if i := strings.IndexByte(pattern, ' '); i >= 0 && !strings.HasPrefix(pattern, "/") {
		pattern = strings.TrimLeft(pattern[i+1:], " \t")
	}
	return pattern, true
}

// knownMethod is m if it is one of HTTP's methods, else "_OTHER": the
// method is the client's to choose, and span names and attributes must
// stay a bounded set.
func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// spanMethod is the method as it starts a span's name ("HTTP" for an
// unknown one, as the conventions ask).
func spanMethod(m string) string {
	if m == "_OTHER" {
		return "HTTP"
	}
	return m
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets a handler stream through the wrapper (a CSV download).
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush() // a writer that cannot flush sends at the end
}

// Unwrap gives http.ResponseController the writer underneath.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// code is the status sent: 200 when the handler wrote nothing.
func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
