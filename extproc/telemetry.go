package extproc

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	otelattr "go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/extproc/translate"
)

// What ext_proc tells about its requests: metrics under the OpenTelemetry
// GenAI semantic conventions, a trace per request with a span per phase and
// per try, and the request id on every log line. None of it carries a
// request's or a response's content, or a credential: the attributes are
// ids, names, counts, codes and durations. docs/observability.md lists them.

// Attribute keys. The gen_ai.* keys follow the GenAI semantic conventions
// (development status; the names of the current conventions, with
// gen_ai.provider.name rather than the older gen_ai.system).
const (
	attrOperation     = otelattr.Key("gen_ai.operation.name")
	attrProvider      = otelattr.Key("gen_ai.provider.name")
	attrRequestModel  = otelattr.Key("gen_ai.request.model")
	attrResponseModel = otelattr.Key("gen_ai.response.model")
	attrTokenType     = otelattr.Key("gen_ai.token.type")
	attrInputTokens   = otelattr.Key("gen_ai.usage.input_tokens")
	attrOutputTokens  = otelattr.Key("gen_ai.usage.output_tokens")
	attrErrorType     = otelattr.Key("error.type")
	attrStatus        = otelattr.Key("http.response.status_code")
	attrTenant        = otelattr.Key("tollgate.tenant.id")
	attrKey           = otelattr.Key("tollgate.key.id")
	attrRequestID     = otelattr.Key("tollgate.request.id")
	attrDeployment    = otelattr.Key("tollgate.deployment.id")
	attrTry           = otelattr.Key("tollgate.try")
	attrReason        = otelattr.Key("tollgate.reason")
	attrStream        = otelattr.Key("tollgate.extproc.stream")
	attrPhase         = otelattr.Key("tollgate.extproc.phase")
	attrStreamed      = otelattr.Key("tollgate.streamed")
	attrEstimated     = otelattr.Key("tollgate.usage.estimated")
	attrChunks        = otelattr.Key("tollgate.response.chunks")
)

// The buckets the GenAI conventions recommend.
var (
	tokenBuckets    = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}
	durationBuckets = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	// ext_proc's own work per message is micro- to milliseconds.
	phaseBuckets = []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1}
)

// instruments are a Server's metrics and tracer.
type instruments struct {
	tracer       trace.Tracer
	tenantLabels bool

	tokens     metric.Int64Histogram
	duration   metric.Float64Histogram
	firstChunk metric.Float64Histogram
	phase      metric.Float64Histogram
	rejections metric.Int64Counter
	tryCount   metric.Int64Counter
	// phaseOpts are the attribute sets of every stream and phase, made
	// once: the hot path records with them and allocates nothing.
	phaseOpts map[phaseKey][]metric.RecordOption

	// series holds the attribute sets of the request and try series seen
	// so far, so that a request records its metrics without building them
	// again. It holds one entry per series the SDK keeps anyway.
	mu     sync.RWMutex
	series map[seriesKey]*seriesOpts
	tries  map[tryKey][]metric.AddOption
}

// seriesKey names a request series: the attributes of its metrics.
type seriesKey struct {
	operation, provider, requestModel, responseModel, errorType, tenant string
	status                                                              int
	hasProvider                                                         bool
}

type seriesOpts struct {
	attrs                   []otelattr.KeyValue // for the request's span
	duration, input, output []metric.RecordOption
}

type tryKey struct {
	provider, errorType string
	status              int
}

type phaseKey struct {
	upstream bool
	phase    string
}

// The phases of a stream, by the message ext_proc answers.
const (
	phaseRequestHeaders   = "request_headers"
	phaseRequestBody      = "request_body"
	phaseResponseHeaders  = "response_headers"
	phaseResponseBody     = "response_body"
	phaseRequestTrailers  = "request_trailers"
	phaseResponseTrailers = "response_trailers"
)

func newInstruments(mp metric.MeterProvider, tp trace.TracerProvider, tenantLabels bool, inFlight func() int) *instruments {
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	const scope = "github.com/tollgate-dev/tollgate/extproc"
	m := mp.Meter(scope)
	in := &instruments{tracer: tp.Tracer(scope), tenantLabels: tenantLabels, phaseOpts: map[phaseKey][]metric.RecordOption{},
		series: map[seriesKey]*seriesOpts{}, tries: map[tryKey][]metric.AddOption{}}
	// The API returns a working no-op instrument with its error, and the
	// names and options here are constants that a test checks: nothing to
	// handle.
	in.tokens, _ = m.Int64Histogram("gen_ai.client.token.usage", metric.WithUnit("{token}"),
		metric.WithDescription("Tokens of each request, by type (input, output), as billed: what the provider reported, else Tollgate's estimate."),
		metric.WithExplicitBucketBoundaries(tokenBuckets...))
	in.duration, _ = m.Float64Histogram("gen_ai.client.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of each request, from its headers reaching ext_proc to the end of its response (every try included)."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	in.firstChunk, _ = m.Float64Histogram("gen_ai.client.operation.time_to_first_chunk", metric.WithUnit("s"),
		metric.WithDescription("Time from a streamed request's headers to the first chunk of its response."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	in.phase, _ = m.Float64Histogram("tollgate.extproc.phase.duration", metric.WithUnit("s"),
		metric.WithDescription("Time ext_proc spends answering one message of a stream, by stream (downstream, upstream) and phase."),
		metric.WithExplicitBucketBoundaries(phaseBuckets...))
	in.rejections, _ = m.Int64Counter("tollgate.extproc.rejections", metric.WithUnit("{request}"),
		metric.WithDescription("Requests ext_proc answered itself with an error, by reason (the error code clients see) and status."))
	in.tryCount, _ = m.Int64Counter("tollgate.extproc.tries", metric.WithUnit("{try}"),
		metric.WithDescription("Tries sent to providers (a request's first try and each retry or fallback), by provider and response status."))
	gauge, _ := m.Int64ObservableGauge("tollgate.extproc.requests.in_flight", metric.WithUnit("{request}"),
		metric.WithDescription("Requests between their headers and the end of their downstream stream."))
	// Fails only for an instrument of another provider; gauge is this one's.
	_, _ = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(gauge, int64(inFlight()))
		return nil
	}, gauge)
	for _, up := range []bool{false, true} {
		stream := "downstream"
		if up {
			stream = "upstream"
		}
		for _, p := range []string{phaseRequestHeaders, phaseRequestBody, phaseResponseHeaders, phaseResponseBody, phaseRequestTrailers, phaseResponseTrailers} {
			in.phaseOpts[phaseKey{up, p}] = []metric.RecordOption{metric.WithAttributeSet(otelattr.NewSet(attrStream.String(stream), attrPhase.String(p)))}
		}
	}
	return in
}

// phaseOf names the phase a message starts.
func phaseOf(m *extprocv3.ProcessingRequest) string {
	switch m.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return phaseRequestHeaders
	case *extprocv3.ProcessingRequest_RequestBody:
		return phaseRequestBody
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return phaseResponseHeaders
	case *extprocv3.ProcessingRequest_ResponseBody:
		return phaseResponseBody
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return phaseRequestTrailers
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return phaseResponseTrailers
	}
	return ""
}

// phaseDone records how long ext_proc took to answer a message of phase,
// from start, and gives it a span under ctx's (a response body's chunks get
// one span for them all, from the try: see upstream).
func (in *instruments) phaseDone(ctx context.Context, upstream bool, phase string, start time.Time) {
	if opts, ok := in.phaseOpts[phaseKey{upstream, phase}]; ok {
		in.phase.Record(ctx, time.Since(start).Seconds(), opts...)
	}
	if phase == phaseResponseBody {
		return
	}
	if parent := trace.SpanFromContext(ctx); parent.IsRecording() {
		_, span := in.tracer.Start(ctx, "ext_proc "+phase, trace.WithSpanKind(trace.SpanKindInternal), trace.WithTimestamp(start))
		span.End()
	}
}

// endUnownedSpan ends the span of a request that never had a tenant (no
// key, or answered by ext_proc itself, like the model list).
func (d *downstream) endUnownedSpan() {
	if d.span.IsRecording() && d.refusedStatus != 0 {
		d.span.SetAttributes(attrStatus.Int(d.refusedStatus), attrErrorType.String(d.refusedType))
		d.span.SetStatus(codes.Error, d.refusedType)
	}
	d.span.End()
}

// operationOf is the GenAI operation a client API performs.
func operationOf(api translate.ClientAPI) string {
	if api == translate.OpenAIEmbeddings {
		return "embeddings"
	}
	return "chat"
}

// providerName is the gen_ai.provider.name of a provider kind: the
// conventions' well-known value where there is one.
func providerName(k configv1.ProviderKind) string {
	switch k {
	case configv1.ProviderKind_PROVIDER_KIND_OPENAI:
		return "openai"
	case configv1.ProviderKind_PROVIDER_KIND_ANTHROPIC:
		return "anthropic"
	case configv1.ProviderKind_PROVIDER_KIND_GEMINI:
		return "gcp.gemini"
	case configv1.ProviderKind_PROVIDER_KIND_AZURE_OPENAI:
		return "azure.ai.openai"
	case configv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE:
		return "openai_compatible"
	}
	return "_OTHER"
}

// errorTypeOf is a request's error.type: its error code, else its status
// when that is an error, else "" (no error).
func errorTypeOf(rec *usagev1.UsageRecord) string {
	switch {
	case rec.GetErrorType() != "":
		return rec.GetErrorType()
	case rec.GetStatusCode() >= 400:
		return strconv.Itoa(int(rec.GetStatusCode()))
	}
	return ""
}

// requestEnded records a finished request's metrics from its usage record,
// and ends its span. provider is the last try's provider (nil when no try
// was made); firstChunk is the time to its response's first chunk,
// negative when none came.
func (in *instruments) requestEnded(ctx context.Context, span trace.Span, api translate.ClientAPI, provider *configv1.Provider, firstChunk time.Duration, rec *usagev1.UsageRecord) {
	key := seriesKey{operation: operationOf(api), requestModel: rec.GetModel(), responseModel: rec.GetUpstreamModel(),
		errorType: errorTypeOf(rec), status: int(rec.GetStatusCode()), hasProvider: provider != nil}
	if provider != nil {
		key.provider = providerName(provider.GetKind())
	}
	if in.tenantLabels {
		key.tenant = rec.GetTenantId()
	}
	s := in.seriesOf(key)
	in.duration.Record(ctx, float64(rec.GetLatencyMs())/1000, s.duration...)
	if rec.GetStreamed() && firstChunk >= 0 {
		in.firstChunk.Record(ctx, firstChunk.Seconds(), s.duration...)
	}
	if provider != nil {
		in.tokens.Record(ctx, rec.GetInputTokens(), s.input...)
		in.tokens.Record(ctx, rec.GetOutputTokens(), s.output...)
	}
	errType, attrs := key.errorType, s.attrs

	if !span.IsRecording() {
		span.End()
		return
	}
	span.SetAttributes(attrs...)
	span.SetAttributes(attrRequestID.String(rec.GetRequestId()), attrTenant.String(rec.GetTenantId()), attrKey.String(rec.GetKeyId()),
		attrStreamed.Bool(rec.GetStreamed()))
	if provider != nil {
		span.SetAttributes(attrInputTokens.Int64(rec.GetInputTokens()), attrOutputTokens.Int64(rec.GetOutputTokens()), attrEstimated.Bool(rec.GetEstimated()))
	}
	if errType != "" {
		span.SetStatus(codes.Error, errType)
	}
	span.End()
}

// seriesOf returns the attribute sets of the series k names, made once.
func (in *instruments) seriesOf(k seriesKey) *seriesOpts {
	in.mu.RLock()
	s := in.series[k]
	in.mu.RUnlock()
	if s != nil {
		return s
	}
	attrs := make([]otelattr.KeyValue, 0, 8)
	attrs = append(attrs, attrOperation.String(k.operation), attrStatus.Int(k.status))
	if k.hasProvider {
		attrs = append(attrs, attrProvider.String(k.provider))
	}
	if k.requestModel != "" {
		attrs = append(attrs, attrRequestModel.String(k.requestModel))
	}
	if k.responseModel != "" {
		attrs = append(attrs, attrResponseModel.String(k.responseModel))
	}
	if k.errorType != "" {
		attrs = append(attrs, attrErrorType.String(k.errorType))
	}
	if in.tenantLabels {
		attrs = append(attrs, attrTenant.String(k.tenant))
	}
	// Token usage has no error.type or status in the conventions: a failed
	// request's tokens count the same.
	tokenAttrs := make([]otelattr.KeyValue, 0, len(attrs)+1)
	for _, a := range attrs {
		if a.Key != attrErrorType && a.Key != attrStatus {
			tokenAttrs = append(tokenAttrs, a)
		}
	}
	s = &seriesOpts{
		attrs:    attrs,
		duration: []metric.RecordOption{metric.WithAttributeSet(otelattr.NewSet(attrs...))},
		input:    []metric.RecordOption{metric.WithAttributeSet(otelattr.NewSet(append(tokenAttrs, attrTokenType.String("input"))...))},
		output:   []metric.RecordOption{metric.WithAttributeSet(otelattr.NewSet(append(tokenAttrs, attrTokenType.String("output"))...))},
	}
	in.mu.Lock()
	in.series[k] = s
	in.mu.Unlock()
	return s
}

// rejected counts a request ext_proc answered itself with an error.
func (in *instruments) rejected(ctx context.Context, e *translate.Error, tenantID string) {
	attrs := []otelattr.KeyValue{attrReason.String(e.Code), attrStatus.Int(e.Status)}
	if in.tenantLabels && tenantID != "" {
		attrs = append(attrs, attrTenant.String(tenantID))
	}
	in.rejections.Add(ctx, 1, metric.WithAttributes(attrs...))
}

// tryEnded counts a try and ends its span.
func (in *instruments) tryEnded(ctx context.Context, span trace.Span, t try, chunks int) {
	k := tryKey{provider: providerName(t.provider.GetKind()), status: t.status, errorType: t.errorType}
	if k.errorType == "" && !t.complete {
		k.errorType = "incomplete_response"
	}
	in.mu.RLock()
	opts, ok := in.tries[k]
	in.mu.RUnlock()
	if !ok {
		opts = []metric.AddOption{metric.WithAttributeSet(otelattr.NewSet(k.attrs()...))}
		in.mu.Lock()
		in.tries[k] = opts
		in.mu.Unlock()
	}
	in.tryCount.Add(ctx, 1, opts...)
	if !span.IsRecording() {
		span.End()
		return
	}
	errType := k.errorType
	span.SetAttributes(k.attrs()...)
	span.SetAttributes(attrInputTokens.Int64(t.usage.InputTokens), attrOutputTokens.Int64(t.usage.OutputTokens),
		attrEstimated.Bool(t.usage.Estimated), attrChunks.Int(chunks))
	if errType != "" {
		span.SetStatus(codes.Error, errType)
	}
	span.End()
}

func (k tryKey) attrs() []otelattr.KeyValue {
	attrs := []otelattr.KeyValue{attrProvider.String(k.provider), attrStatus.Int(k.status)}
	if k.errorType != "" {
		attrs = append(attrs, attrErrorType.String(k.errorType))
	}
	return attrs
}

// headerCarrier reads W3C trace context from the headers Envoy sent.
type headerCarrier struct{ hm *corev3.HeaderMap }

func (c headerCarrier) Get(key string) string { return header(c.hm, key) }
func (c headerCarrier) Set(string, string)    {}
func (c headerCarrier) Keys() []string        { return nil }

// mutationCarrier writes W3C trace context into a header mutation.
type mutationCarrier struct{ m *mutation }

func (c mutationCarrier) Get(string) string          { return "" }
func (c mutationCarrier) Set(key, value string)      { c.m.setHeader(key, value) }
func (c mutationCarrier) Keys() []string             { return nil }
func (c mutationCarrier) inject(ctx context.Context) { traceContext.Inject(ctx, c) }

// traceContext is the W3C propagator: traceparent and tracestate.
var traceContext propagation.TraceContext

// traceContextOf is the W3C trace context of a request's span for its usage
// record, so that the control plane's span for the batch that stores the
// record joins the request's trace; nil when the request is not sampled
// (the control plane would not record a span under it either), and when
// ext_proc does not trace (a no-op span that merely carries the client's
// context).
func traceContextOf(span trace.Span) map[string]string {
	sc := span.SpanContext()
	if !span.IsRecording() || !sc.IsSampled() {
		return nil
	}
	// Without the tracestate, which comes from the client (vendors' opaque
	// data, up to 512 bytes): the batch's span needs only the ids and the
	// sampling flag, the traceparent.
	carrier := propagation.MapCarrier{}
	traceContext.Inject(trace.ContextWithSpanContext(context.Background(), sc.WithTraceState(trace.TraceState{})), carrier)
	return carrier
}

// requestLog writes a request's log lines, each with the request's id and,
// when it is traced, its trace id. Callers check enabled before building a
// line's arguments: at the default level (info) the hot path's debug lines
// then cost nothing, not even the boxing of their arguments.
type requestLog struct {
	log     *slog.Logger
	id      string
	traceID string
}

func newRequestLog(ctx context.Context, log *slog.Logger, id string) *requestLog {
	l := &requestLog{log: log, id: id}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		l.traceID = sc.TraceID().String()
	}
	return l
}

func (l *requestLog) enabled(level slog.Level) bool {
	return l.log.Enabled(context.Background(), level)
}

func (l *requestLog) write(level slog.Level, msg string, args ...any) {
	l.logger().Log(context.Background(), level, msg, args...)
}

// logger is a logger whose every line carries the request's ids.
func (l *requestLog) logger() *slog.Logger {
	if l.traceID != "" {
		return l.log.With("request_id", l.id, "trace_id", l.traceID)
	}
	return l.log.With("request_id", l.id)
}

// startSpan starts the try's span, numbered n, under the request's, and
// logs the try.
func (u *upstream) startSpan(n int) {
	r := u.req
	name := operationOf(r.api) + " " + u.try.deployment.GetUpstreamModel()
	u.ctx, u.span = u.s.tel.tracer.Start(trace.ContextWithSpan(context.Background(), r.span), name, trace.WithSpanKind(trace.SpanKindClient))
	if u.span.IsRecording() {
		u.span.SetAttributes(attrOperation.String(operationOf(r.api)), attrProvider.String(providerName(u.try.provider.GetKind())),
			attrRequestModel.String(u.try.deployment.GetUpstreamModel()), attrResponseModel.String(u.try.deployment.GetUpstreamModel()),
			attrDeployment.String(u.try.deployment.GetDeploymentId()), attrTry.Int(n), attrRequestID.String(r.id))
	}
	if u.log.enabled(slog.LevelDebug) {
		u.log.write(slog.LevelDebug, "try started", "try", n, "provider", u.try.provider.GetName(), "deployment_id", u.try.deployment.GetDeploymentId(),
			"upstream_model", u.try.deployment.GetUpstreamModel())
	}
}

// bodyChunk counts a response chunk; the first opens the body's span.
func (u *upstream) bodyChunk() {
	u.chunks++
	if u.chunks == 1 && u.span.IsRecording() {
		_, u.bodySpan = u.s.tel.tracer.Start(u.ctx, "ext_proc response_body", trace.WithSpanKind(trace.SpanKindInternal))
	}
}

// endSpans ends the try's spans when its stream ends, and counts it.
func (u *upstream) endSpans() {
	if u.bodySpan != nil {
		u.bodySpan.SetAttributes(attrChunks.Int(u.chunks))
		u.bodySpan.End()
	}
	u.req.mu.Lock()
	t := *u.try
	u.req.mu.Unlock()
	u.s.tel.tryEnded(u.ctx, u.span, t, u.chunks)
	if u.log.enabled(slog.LevelDebug) {
		u.log.write(slog.LevelDebug, "try ended", "status", t.status, "error_type", t.errorType, "complete", t.complete, "chunks", u.chunks)
	}
}
