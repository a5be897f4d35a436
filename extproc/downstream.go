package extproc

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
	"github.com/tollgate-dev/tollgate/extproc/quota"
	"github.com/tollgate-dev/tollgate/extproc/translate"
)

// downstream processes the listener filter's stream of one request:
// authentication, policy and the choice of route. When the stream ends,
// the request is over, and its usage record is written.
type downstream struct {
	s      *Server
	st     stream
	api    translate.ClientAPI // the error shape for this client
	req    *request            // set once the key is known
	client string              // the client's address as Envoy reports it (ip:port)

	// A request refused by ext_proc itself, for its usage record.
	refusedStatus int
	refusedType   string

	// The request's trace span (continuing the client's traceparent) and
	// its logger, which carries its request id.
	ctx  context.Context
	span trace.Span
	log  *requestLog
}

func (d *downstream) run(hh *extprocv3.HttpHeaders) error {
	start := time.Now()
	parent := traceContext.Extract(context.Background(), headerCarrier{hh.GetHeaders()})
	d.ctx, d.span = d.s.tel.tracer.Start(parent, "tollgate.request", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start))
	// Envoy's id until the request has one of ours (requestHeaders).
	d.log = newRequestLog(d.ctx, d.s.log, header(hh.GetHeaders(), "x-request-id"))
	defer d.finish()
	resp := d.requestHeaders(hh)
	d.s.tel.phaseDone(d.ctx, false, phaseRequestHeaders, start)
	for {
		if err := d.st.Send(resp); err != nil {
			return ended(err)
		}
		if resp.GetImmediateResponse() != nil {
			return nil
		}
		msg, err := d.st.Recv()
		if err != nil {
			return ended(err)
		}
		start := time.Now()
		switch m := msg.GetRequest().(type) {
		case *extprocv3.ProcessingRequest_RequestBody:
			resp = d.requestBody(m.RequestBody)
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			resp = d.responseHeaders()
		case *extprocv3.ProcessingRequest_ResponseBody:
			resp = continueResponseBody
		case *extprocv3.ProcessingRequest_RequestTrailers:
			resp = requestTrailersReply()
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			resp = responseTrailersReply()
		default:
			resp = requestHeadersReply(continueWith(nil))
		}
		d.s.tel.phaseDone(d.ctx, false, phaseOf(msg), start)
	}
}

// refuse answers the client with e in its API's error shape.
func (d *downstream) refuse(e *translate.Error) *extprocv3.ProcessingResponse {
	d.refusedStatus, d.refusedType = e.Status, e.Code
	tenantID := ""
	if d.req != nil {
		tenantID = d.req.tenant.GetTenantId()
	}
	d.s.tel.rejected(d.ctx, e, tenantID)
	if d.log.enabled(slog.LevelDebug) {
		d.log.write(slog.LevelDebug, "request refused", "status", e.Status, "code", e.Code)
	}
	return immediate(e.Status, "application/json", e.Body(d.api), "tollgate_"+e.Code)
}

func (d *downstream) requestHeaders(hh *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	h := hh.GetHeaders()
	method, path := header(h, ":method"), header(h, ":path")
	d.api = apiOf(path)
	select {
	case <-d.s.cfg.Ready():
	default:
		return d.refuse(&translate.Error{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "starting",
			Message: "Tollgate is starting and has not loaded its configuration yet; retry in a moment."})
	}
	ep, routeErr := route(method, path)
	if routeErr != nil {
		return d.refuse(routeErr)
	}
	now := d.s.now()
	key, tenant, authErr := authenticate(d.s.cfg, h, now)
	if key != nil {
		// From here on the request belongs to a tenant: even a refusal is
		// recorded as its usage. Its id is ours, not the client's: the
		// usage record is deduplicated by it, and Envoy keeps a client's
		// x-request-id when it counts the client as internal, so a client
		// could otherwise choose ids (and be billed once for many
		// requests). The new id replaces x-request-id below, so the access
		// log, the tries' streams and the record all carry the same one.
		d.req = &request{id: uuid.NewString(), api: ep.api, start: now, tenant: tenant, key: key,
			noStore: !allowsProviderStorage(tenant), keepContent: keepsContent(tenant, key), span: d.span}
		d.log.id = d.req.id
		d.req.log = d.log
	}
	if authErr != nil {
		return d.refuse(authErr)
	}
	if e := addressAllowed(d.client, tenant, key); e != nil {
		return d.refuse(e)
	}
	if ep.listModels || ep.getModel != "" {
		anthropic := header(h, "anthropic-version") != ""
		names := usableModels(d.s.cfg, key, tenant)
		d.req = nil // answered here: no tokens, no usage record
		if ep.listModels {
			return immediate(http.StatusOK, "application/json", listModels(names, anthropic), "tollgate_models")
		}
		code, body := getModel(names, ep.getModel, anthropic)
		return immediate(code, "application/json", body, "tollgate_models")
	}
	if hh.GetEndOfStream() {
		return d.refuse(&translate.Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: translate.CodeInvalidJSON,
			Message: "The request has no body; send a JSON body."})
	}
	// The client's key goes no further than here: whichever provider a try
	// reaches gets its own credential from the upstream filter.
	m := &mutation{}
	m.removeHeader(translate.ClientCredentialHeaders()...)
	m.setHeader("x-request-id", d.req.id)
	resp := requestHeadersReply(continueWith(m))
	resp.DynamicMetadata = clientAPIMetadata(d.api)
	return resp
}

// requestFields are the fields of every client API that ext_proc reads.
type requestFields struct {
	Model  string `json:"model"`
	Stream bool   `json:"stream"`
	// The output limit, by API: Chat Completions (both spellings),
	// Responses, Anthropic Messages.
	MaxTokens           *int64 `json:"max_tokens"`
	MaxCompletionTokens *int64 `json:"max_completion_tokens"`
	MaxOutputTokens     *int64 `json:"max_output_tokens"`
}

// maxOutput is the most output the request allows, for its worst-case
// cost: the client's own limit, else what is left of the model's context
// window, else the default the translators send to providers that need
// one.
func (f *requestFields) maxOutput(m *configv1.Model, input int64) int64 {
	for _, v := range []*int64{f.MaxCompletionTokens, f.MaxTokens, f.MaxOutputTokens} {
		if v != nil && *v > 0 {
			return *v
		}
	}
	if cw := m.GetContextWindow(); cw > input {
		return cw - input
	}
	return translate.DefaultMaxTokens
}

func (d *downstream) requestBody(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	r := d.req
	var f requestFields
	if err := json.Unmarshal(b.GetBody(), &f); err != nil {
		return d.refuse(&translate.Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: translate.CodeInvalidJSON,
			Message: "We could not parse the JSON body of your request: " + err.Error()})
	}
	if f.Model == "" {
		return d.refuse(&translate.Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: translate.CodeMissingParameter, Param: "model",
			Message: "You must provide a model parameter."})
	}
	m := d.s.cfg.Model(r.tenant.GetTenantId(), f.Model)
	if m == nil {
		return d.refuse(modelNotFound(f.Model))
	}
	if e := modelAllowed(r.key, r.tenant, f.Model); e != nil {
		return d.refuse(e)
	}
	if e := outputAllowed(&f, r.tenant, r.key); e != nil {
		return d.refuse(e)
	}
	if limit, ok := maxOutputTokens(r.tenant, r.key); ok {
		r.outputCap = limit
	}
	r.requirement = privacyRequirement(r.tenant, r.key)
	deps, route, e := privacyRoute(m, r.requirement)
	if e != nil {
		return d.refuse(e)
	}
	if e := providersAllowed(d.s.cfg, m, deps, r.tenant, r.key); e != nil {
		return d.refuse(e)
	}
	r.model, r.deployments, r.stream, r.body = m, deps, f.Stream, b.GetBody()
	if redacts(r.tenant, r.key) {
		if r.body, r.redactions, e = redactBody(r.api, r.body); e != nil {
			return d.refuse(e)
		}
	}
	// Translate for the first deployment now, so that a request that no
	// provider could take is refused with a 400 before it leaves; each try
	// translates again for its own deployment.
	if e := d.checkTranslation(); e != nil {
		return d.refuse(e)
	}
	if resp := d.admit(&f); resp != nil {
		return resp
	}
	// Published only now, complete: the upstream streams read it from here,
	// and the table's lock orders these writes before their reads.
	d.s.inflight.add(r)
	if d.log.enabled(slog.LevelDebug) {
		d.log.write(slog.LevelDebug, "request admitted", "model", m.GetName(), "tenant_id", r.tenant.GetTenantId(), "key_id", r.key.GetKeyId(), "stream", r.stream)
	}
	mut := &mutation{}
	mut.setHeader(xdstranslate.RouteHeader, route)
	return requestBodyReply(&extprocv3.CommonResponse{HeaderMutation: mut.proto(), ClearRouteCache: true})
}

// admit reserves the request's worst case against its tenant's and key's
// limits; a request that does not fit is answered 429 before it leaves.
func (d *downstream) admit(f *requestFields) *extprocv3.ProcessingResponse {
	q := d.s.quota
	if q == nil {
		return nil
	}
	r := d.req
	input := r.first.Response.EstimatedInputTokens
	output := f.maxOutput(r.model, input)
	if r.outputCap > 0 { // the policy's limit, read in requestBody
		output = min(output, r.outputCap)
	}
	worst := cost(priceAt(r.model.GetPrices(), r.start), translate.Usage{InputTokens: input, OutputTokens: output})
	subjects := []quota.Subject{
		{Kind: quota.Tenant, ID: r.tenant.GetTenantId(), Limits: quota.FromPolicy(r.tenant.GetPolicy())},
		{Kind: quota.Key, ID: r.key.GetKeyId(), Limits: quota.FromPolicy(r.key.GetPolicy())},
	}
	res, err := q.Admit(r.start, subjects, quota.Cost{Tokens: input + output, Micros: worst})
	if err == nil {
		r.reservation = res
		return nil
	}
	var denial *quota.Denial
	if !errors.As(err, &denial) {
		return d.refuse(&translate.Error{Status: http.StatusInternalServerError, Type: "server_error", Code: "quota_error", Message: err.Error()})
	}
	typ, code := denial.OpenAIError()
	e := &translate.Error{Status: http.StatusTooManyRequests, Type: typ, Code: code, Message: denial.Error()}
	resp := d.refuse(e)
	for _, h := range denial.AppendHeaders(nil) {
		resp.GetImmediateResponse().Headers.SetHeaders = append(resp.GetImmediateResponse().Headers.SetHeaders,
			&corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: h.Name, RawValue: []byte(h.Value)}})
	}
	return resp
}

func (d *downstream) checkTranslation() *translate.Error {
	r := d.req
	deps := r.deployments
	if len(deps) == 0 {
		return modelNotFound(r.model.GetName())
	}
	p := d.s.cfg.Provider(deps[0].GetProviderId())
	if p == nil {
		return &translate.Error{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "provider_unavailable",
			Message: "The model's provider is not configured; an operator must fix it."}
	}
	preq, err := translate.TranslateRequest(r.api, target(r, deps[0], p), r.body)
	if err != nil {
		var te *translate.Error
		if errors.As(err, &te) {
			return te
		}
		return &translate.Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: translate.CodeInvalidValue, Message: err.Error()}
	}
	r.first, r.firstDeployment = preq, deps[0].GetDeploymentId()
	return nil
}

// maxResponseTime bounds how long a usage record waits for a try's stream
// to end after the downstream stream did; Envoy's route timeout (10 minutes
// by default) ends every try well before.
const maxResponseTime = 15 * time.Minute

// finish runs when the downstream stream ends: the request is no longer
// looked up by new tries, and its usage record is written once its open
// tries have ended too.
func (d *downstream) finish() {
	r := d.req
	if r == nil {
		d.endUnownedSpan()
		return
	}
	d.s.inflight.remove(r.id)
	r.record = func() {
		rec := d.usageRecord()
		d.settle(rec)
		// Metrics, span and log line first: once the record is handed to
		// the recorder it belongs to the recorder's goroutine, and whoever
		// sees the record stored (a test, a dashboard) must find the
		// request's metrics already there.
		defer d.s.usage.Record(rec)
		t, _ := r.outcome()
		provider, firstChunk := t.provider, t.firstByte.Sub(r.start)
		if rec.GetProvider() == "" {
			provider = nil
		}
		if t.firstByte.IsZero() {
			firstChunk = -1
		}
		d.s.tel.requestEnded(context.Background(), d.span, r.api, provider, firstChunk, rec)
		if !d.log.enabled(slog.LevelDebug) {
			return
		}
		d.log.write(slog.LevelDebug, "request finished", "status", rec.GetStatusCode(), "error_type", rec.GetErrorType(), "model", rec.GetModel(),
			"provider", rec.GetProvider(), "upstream_model", rec.GetUpstreamModel(), "input_tokens", rec.GetInputTokens(),
			"output_tokens", rec.GetOutputTokens(), "estimated", rec.GetEstimated(), "cost_micros", rec.GetCostMicros(),
			"latency_ms", rec.GetLatencyMs(), "ttft_ms", rec.GetTtftMs())
	}
	r.downstreamEnded(maxResponseTime)
}

// responseHeaders adds OpenAI's rate-limit headers to every admitted
// request's response, so SDKs can pace themselves.
func (d *downstream) responseHeaders() *extprocv3.ProcessingResponse {
	if d.req == nil || d.req.reservation == nil {
		return continueResponseHeaders
	}
	m := &mutation{}
	for _, h := range d.req.reservation.Headers().Append(nil) {
		m.setHeader(h.Name, h.Value)
	}
	return responseHeadersReply(continueWith(m))
}

// settle replaces the request's reservation with what it used: its tokens
// and cost as recorded. A request that reached no provider used nothing.
func (d *downstream) settle(rec *usagev1.UsageRecord) {
	res := d.req.reservation
	if res == nil {
		return
	}
	var events []quota.Event
	if rec.GetProvider() == "" {
		events = res.Release()
	} else {
		events = res.Settle(quota.Cost{Tokens: rec.GetInputTokens() + rec.GetOutputTokens(), Micros: rec.GetCostMicros()})
	}
	if len(events) > 0 {
		logQuotaEvents(d.log.logger(), events)
	}
}

// usageRecord is the request's usage, from the outcome of its last try.
func (d *downstream) usageRecord() *usagev1.UsageRecord {
	r := d.req
	end := d.s.now()
	rec := &usagev1.UsageRecord{
		RequestId: r.id,
		TenantId:  r.tenant.GetTenantId(),
		KeyId:     r.key.GetKeyId(),
		Streamed:  r.stream,
		LatencyMs: end.Sub(r.start).Milliseconds(),
		Time:      timestamppb.New(r.start),
	}
	if r.model != nil {
		rec.Model = r.model.GetName()
	}
	rec.Redactions = r.redactions
	t, tries := r.outcome()
	switch {
	case d.refusedStatus != 0:
		rec.StatusCode, rec.ErrorType = int32(d.refusedStatus), d.refusedType
	case tries == 0 && r.model == nil:
		// The body never reached ext_proc: Envoy answered while buffering
		// it (413 for a body over its limit) or the client left while
		// sending it.
		rec.StatusCode, rec.ErrorType = 0, "no_request_body"
	case tries == 0:
		// Envoy answered without reaching a provider (no healthy
		// deployment, a timeout before any try, the client left).
		rec.StatusCode, rec.ErrorType = 0, "no_upstream"
	default:
		rec.Provider = t.provider.GetName()
		rec.UpstreamModel = t.deployment.GetUpstreamModel()
		rec.StatusCode = int32(t.status)
		rec.ErrorType = t.errorType
		if !t.complete && rec.ErrorType == "" {
			// The response was cut (the provider or the client went away):
			// usage is the estimate of what was produced so far.
			rec.ErrorType = "incomplete_response"
		}
		rec.InputTokens = t.usage.InputTokens
		rec.OutputTokens = t.usage.OutputTokens
		rec.CachedInputTokens = t.usage.CachedInputTokens
		rec.ReasoningTokens = t.usage.ReasoningTokens
		rec.Estimated = t.usage.Estimated
		rec.CostMicros = cost(priceAt(r.model.GetPrices(), r.start), t.usage)
		if !t.firstByte.IsZero() {
			rec.TtftMs = t.firstByte.Sub(r.start).Milliseconds()
		}
	}
	if r.keepContent && r.body != nil {
		rec.Content = r.content(t, d.s.contentLimit)
	}
	rec.TraceContext = traceContextOf(d.span)
	return rec
}
