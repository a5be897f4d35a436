package extproc

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate-dev/tollgate/extproc/translate"
)

// upstream processes one try's stream: Envoy has picked a deployment (a
// host of the model's cluster); the request is translated for its provider
// and the response back for the client, and its usage is counted.
type upstream struct {
	s   *Server
	st  stream
	req *request
	try *try
	rt  translate.ResponseTranslator

	// The try's span (a child of the request's), the span of its response
	// body (first chunk to last), the chunks seen, and the request's logger.
	ctx      context.Context
	span     trace.Span
	bodySpan trace.Span
	chunks   int
	log      *requestLog
}

func (u *upstream) run(hh *extprocv3.HttpHeaders, deploymentID string) error {
	start := time.Now()
	u.ctx, u.log = context.Background(), &requestLog{log: u.s.log, id: header(hh.GetHeaders(), "x-request-id")}
	resp := u.requestHeaders(hh, deploymentID)
	u.s.tel.phaseDone(u.ctx, true, phaseRequestHeaders, start)
	if u.try != nil {
		// The usage is read once, when the try's stream ends: reading it
		// per chunk would make the translator estimate (tokenize) what the
		// provider is about to report anyway.
		defer func() {
			u.captureUsage()
			u.endSpans()
			u.req.endTry()
		}()
	}
	for {
		if err := u.st.Send(resp); err != nil {
			return ended(err)
		}
		if resp.GetImmediateResponse() != nil {
			return nil
		}
		msg, err := u.st.Recv()
		if err != nil {
			return ended(err)
		}
		start := time.Now()
		switch m := msg.GetRequest().(type) {
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			resp = u.responseHeaders(m.ResponseHeaders)
		case *extprocv3.ProcessingRequest_ResponseBody:
			resp = u.responseBody(m.ResponseBody)
		case *extprocv3.ProcessingRequest_RequestBody:
			// The body was replaced in the headers reply; Envoy sends none
			// after CONTINUE_AND_REPLACE, but answer one if it does.
			resp = continueRequestBody
		case *extprocv3.ProcessingRequest_RequestTrailers:
			resp = requestTrailersReply()
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			resp = responseTrailersReply()
		default:
			resp = requestHeadersReply(continueWith(nil))
		}
		u.s.tel.phaseDone(u.ctx, true, phaseOf(msg), start)
	}
}

// fail ends a try that cannot be made. Upstream filters answer with a local
// reply like downstream ones in current Envoy; the client sees the error.
func (u *upstream) fail(status int, code, msg string) *extprocv3.ProcessingResponse {
	api := translate.OpenAIChat
	if u.req != nil {
		api = u.req.api
	}
	e := &translate.Error{Status: status, Type: "server_error", Code: code, Message: msg}
	u.s.tel.rejected(u.ctx, e, "")
	u.log.write(slog.LevelWarn, "try failed in ext_proc", "status", status, "code", code)
	return immediate(status, "application/json", e.Body(api), "tollgate_"+code)
}

func (u *upstream) requestHeaders(hh *extprocv3.HttpHeaders, deploymentID string) *extprocv3.ProcessingResponse {
	h := hh.GetHeaders()
	r := u.s.inflight.get(header(h, "x-request-id"))
	if r == nil || r.model == nil {
		return u.fail(http.StatusInternalServerError, "lost_request",
			"Tollgate lost track of this request between its filters (was ext_proc restarted?); retry it.")
	}
	u.req = r
	u.log = r.log
	d := deployment(r.model, deploymentID)
	if d == nil {
		return u.fail(http.StatusServiceUnavailable, "unknown_deployment",
			"Envoy chose a deployment this model does not have; the configuration is changing, retry.")
	}
	p := u.s.cfg.Provider(d.GetProviderId())
	if p == nil {
		return u.fail(http.StatusServiceUnavailable, "provider_unavailable", "The deployment's provider is not configured.")
	}
	if !providerAllowed(p, r.tenant, r.key) {
		// A fallback to a provider the policy excludes ends the request
		// here rather than send it there.
		e := &translate.Error{Status: http.StatusForbidden, Type: "permission_error", Code: "provider_not_allowed",
			Message: "The request would fall back to the provider \"" + p.GetName() + "\", which your organization's policy does not allow."}
		return immediate(e.Status, "application/json", e.Body(r.api), "tollgate_provider_not_allowed")
	}
	if e := tryAllowed(r, d, p); e != nil {
		return immediate(e.Status, "application/json", e.Body(r.api), "tollgate_"+e.Code)
	}
	t := target(r, d, p)
	preq, err := r.first, error(nil)
	if deploymentID != r.firstDeployment {
		preq, err = translate.TranslateRequest(r.api, t, r.body)
	}
	if err != nil {
		var te *translate.Error
		if errors.As(err, &te) {
			return immediate(te.Status, "application/json", te.Body(r.api), "tollgate_"+te.Code)
		}
		return u.fail(http.StatusInternalServerError, "translation_failed", err.Error())
	}
	u.try = &try{deployment: d, provider: p}
	n := r.startTry(u.try)
	u.startSpan(n)
	opts := preq.Response
	opts.RequestID = r.id
	opts.Created = r.start.Unix()
	u.rt = translate.NewResponseTranslator(r.api, t, opts)

	m := &mutation{}
	m.setHeader(":path", preq.Path)
	m.removeHeader(translate.ClientCredentialHeaders()...)
	// Compressed answers could be neither translated nor counted.
	m.setHeader("accept-encoding", "identity")
	for _, ph := range preq.Headers {
		if ph.IfAbsent && header(h, ph.Name) != "" {
			continue
		}
		m.setHeader(ph.Name, ph.Value)
	}
	for _, ch := range translate.CredentialHeaders(t.Kind, p.GetCredential()) {
		m.setHeader(ch.Name, ch.Value)
	}
	// The provider sees the try's span as its caller (W3C traceparent).
	mutationCarrier{m}.inject(u.ctx)
	resp := requestHeadersReply(&extprocv3.CommonResponse{
		Status:         extprocv3.CommonResponse_CONTINUE_AND_REPLACE,
		HeaderMutation: m.proto(),
		BodyMutation:   &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: preq.Body}},
	})
	resp.ModeOverride = streamResponseBody()
	return resp
}

func (u *upstream) responseHeaders(hh *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	h := hh.GetHeaders()
	code, _ := strconv.Atoi(header(h, ":status"))
	ct := u.rt.Headers(code, header(h, "content-type"))
	u.req.mu.Lock()
	u.try.status = code
	if code >= 400 {
		u.try.errorType = "provider_" + strconv.Itoa(code)
	}
	u.req.mu.Unlock()
	m := &mutation{}
	if ct != "" {
		m.setHeader("content-type", ct)
	}
	// The body is translated chunk by chunk: its length is not known.
	m.removeHeader("content-length")
	if hh.GetEndOfStream() {
		u.finishBody(nil, true)
	}
	return responseHeadersReply(continueWith(m))
}

func (u *upstream) responseBody(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	u.bodyChunk()
	chunk := b.GetBody()
	out, err := u.rt.Chunk(chunk, b.GetEndOfStream())
	u.finishBody(err, b.GetEndOfStream())
	if u.req.keepContent {
		u.req.mu.Lock()
		u.try.captureResponse(out, u.s.contentLimit)
		u.req.mu.Unlock()
	}
	if err == nil && bytes.Equal(out, chunk) {
		// Passthrough: leave the chunk as it is rather than send it back.
		return continueResponseBody
	}
	return responseBodyReply(replaceBody(out))
}

// captureUsage reads the try's usage from its translator: what the provider
// reported, or an estimate when the response ended without a report.
func (u *upstream) captureUsage() {
	usage := u.rt.Usage()
	u.req.mu.Lock()
	u.try.usage = usage
	u.req.mu.Unlock()
}

// finishBody records the time of the first byte, errors, and the end of
// the response.
func (u *upstream) finishBody(err error, end bool) {
	now := u.s.now()
	u.req.mu.Lock()
	defer u.req.mu.Unlock()
	if u.try.firstByte.IsZero() {
		u.try.firstByte = now
	}
	if err != nil && u.try.errorType == "" {
		var se *translate.StreamError
		if errors.As(err, &se) {
			u.try.errorType = "provider_stream_error"
		} else {
			u.try.errorType = "provider_response_unreadable"
		}
	}
	if end {
		u.try.complete = true
	}
}
