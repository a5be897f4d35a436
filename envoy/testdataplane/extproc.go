package testdataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// attributesKey is where Envoy puts the evaluated request_attributes, under
// the filter's canonical name whatever the filter instance is called.
const attributesKey = "envoy.filters.http.ext_proc"

// Envoy's header limits (HCM max_request_headers_kb and
// max_headers_count defaults) that a mutation may not exceed.
const (
	maxHeadersCount = 100
	maxHeadersBytes = 60 << 10
)

// errProcessingDone means the processor is out of the picture for the rest
// of the request (it closed its stream with OK, or failed with
// failure_mode_allow): the data passes unprocessed.
var errProcessingDone = errors.New("ext_proc processing complete")

// errUpstreamStall is what an upstream ext_proc filter's failure or
// ImmediateResponse comes to in Envoy releases where an upstream filter
// cannot send a local reply (ext_proc.cc sendImmediateResponse returns early
// when isUpstream): the filter stays paused and the try waits for a
// timeout. Later Envoy main (envoyproxy/envoy#41231) sends a local reply
// from the upstream filter chain instead. The harness models the older
// behaviour, so that Tollgate's ext_proc cannot come to rely on the newer.
var errUpstreamStall = errors.New("upstream ext_proc filter stalled the try (Envoy ignores ImmediateResponse and errors from an upstream ext_proc filter)")

// direction is the side of the exchange a message belongs to.
type direction int

const (
	dirRequest direction = iota
	dirResponse
)

func (d direction) String() string {
	if d == dirRequest {
		return "request"
	}
	return "response"
}

// extProcStream is one ext_proc filter for one HTTP request (downstream) or
// one try (upstream): one gRPC Process stream, opened with the first
// message, one reply awaited per message.
type extProcStream struct {
	cfg *extProcConfig
	s   *stream
	// host is the try's host, for an upstream filter.
	host *host
	mode *extprocv3.ProcessingMode
	// complete is Envoy's processing_complete_: nothing more is sent.
	complete bool

	grpc         extprocsvc.ExternalProcessor_ProcessClient
	cancel       context.CancelFunc
	recv         chan recvResult
	release      func()
	reqAttrsSent bool
	protoCfgSent bool
	headersHeld  bool
}

type recvResult struct {
	resp *extprocsvc.ProcessingResponse
	err  error
}

func newExtProcStream(s *stream, cfg *extProcConfig, h *host) *extProcStream {
	// The mode is per request: overrides and CONTINUE_AND_REPLACE change it.
	return &extProcStream{cfg: cfg, s: s, host: h, mode: proto.Clone(cfg.mode).(*extprocv3.ProcessingMode)}
}

// close ends the gRPC stream the way Envoy does when the filter is
// destroyed: half-close, then reset (the server sees Canceled).
func (e *extProcStream) close() {
	if e.grpc != nil {
		_ = e.grpc.CloseSend()
		e.cancel()
		e.grpc = nil
	}
	if e.release != nil {
		e.release()
		e.release = nil
	}
}

func (e *extProcStream) open() error {
	if e.grpc != nil {
		return nil
	}
	conn, err := e.s.dp.grpcConn(e.cfg.cluster)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	cl := e.s.snap.clusters[e.cfg.cluster]
	if cl != nil {
		// The ext_proc cluster's circuit breaker bounds concurrent streams.
		if cl.activeRequests.Add(1) > int64(cl.cfg.maxRequests) {
			cl.activeRequests.Add(-1)
			return status.Error(codes.Unavailable, "ext_proc cluster circuit breaker open (max_requests)")
		}
		e.release = func() { cl.activeRequests.Add(-1) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := extprocsvc.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		cancel()
		return err
	}
	e.grpc, e.cancel = st, cancel
	e.recv = make(chan recvResult, 1)
	go func(st extprocsvc.ExternalProcessor_ProcessClient, ch chan<- recvResult) {
		for {
			r, err := st.Recv()
			select {
			case ch <- recvResult{r, err}:
			case <-ctx.Done():
				return // nobody waits any more (timeout, or the request ended)
			}
			if err != nil {
				return
			}
		}
	}(st, e.recv)
	return nil
}

// expect says which reply a message needs.
type expect int

const (
	expectRequestHeaders expect = iota
	expectResponseHeaders
	expectRequestBody
	expectResponseBody
)

func (x expect) headers() bool { return x == expectRequestHeaders || x == expectResponseHeaders }

// exchange sends one message and waits for its reply, applying Envoy's
// failure rules. It returns the reply, errProcessingDone, a *localReply
// (downstream filter), or errUpstreamStall (upstream filter).
func (e *extProcStream) exchange(ctx context.Context, req *extprocsvc.ProcessingRequest, want expect) (*extprocsvc.ProcessingResponse, error) {
	if e.complete {
		return nil, errProcessingDone
	}
	req.MetadataContext = &corev3.Metadata{}
	if !e.protoCfgSent {
		e.protoCfgSent = true
		req.ProtocolConfig = &extprocsvc.ProtocolConfiguration{
			RequestBodyMode:  e.mode.GetRequestBodyMode(),
			ResponseBodyMode: e.mode.GetResponseBodyMode(),
		}
	}
	if want == expectRequestHeaders || want == expectRequestBody {
		if !e.reqAttrsSent && len(e.cfg.requestAttributes) > 0 {
			e.reqAttrsSent = true
			req.Attributes = map[string]*structpb.Struct{attributesKey: e.attributes()}
		}
	}
	if err := e.open(); err != nil {
		return nil, e.grpcFailure(err)
	}
	if err := e.grpc.Send(req); err != nil {
		// A send error surfaces as the stream's status on Recv.
		r := <-e.recv
		if r.err == nil {
			r.err = err
		}
		return nil, e.grpcFailure(r.err)
	}
	timeout := e.cfg.messageTimeout
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	overridden := false
	for {
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-timer.C:
			return nil, e.timedOut()
		case r := <-e.recv:
			if r.err != nil {
				return nil, e.grpcFailure(r.err)
			}
			resp := r.resp
			if d := resp.GetOverrideMessageTimeout(); d != nil {
				// The server asks for more time: honoured once per message,
				// within [1 ms, max_message_timeout]; it is not the reply.
				nt := d.AsDuration()
				if !overridden && e.cfg.maxMessageTimeout >= time.Millisecond && nt >= time.Millisecond && nt <= e.cfg.maxMessageTimeout {
					overridden = true
					timer.Reset(nt)
				} else {
					e.s.dp.log.Warn("ext_proc override_message_timeout ignored", "filter", e.cfg.name, "timeout", nt)
				}
				continue
			}
			if e.cfg.allowModeOverride && want.headers() && resp.GetModeOverride() != nil {
				if m, ok := e.cfg.overrideMode(resp.GetModeOverride()); ok {
					e.mode = m
				} else {
					e.s.dp.log.Warn("ext_proc mode_override ignored (not in allowed_override_modes, or an unmodelled mode)", "filter", e.cfg.name)
				}
			}
			if ir := resp.GetImmediateResponse(); ir != nil {
				if e.cfg.disableImmediateResponse {
					return nil, e.spurious("immediate response while disable_immediate_response is set")
				}
				e.receiveMetadata(resp.GetDynamicMetadata())
				e.complete = true
				e.close()
				return nil, e.immediateResponse(ir)
			}
			// Envoy writes a reply's dynamic metadata before it handles
			// the reply (even one it then finds out of order).
			e.receiveMetadata(resp.GetDynamicMetadata())
			if !replyMatches(resp, want) {
				return nil, e.spurious(fmt.Sprintf("reply %T to a %s message", resp.GetResponse(), want))
			}
			return resp, nil
		}
	}
}

func replyMatches(resp *extprocsvc.ProcessingResponse, want expect) bool {
	switch want {
	case expectRequestHeaders:
		return resp.GetRequestHeaders() != nil
	case expectResponseHeaders:
		return resp.GetResponseHeaders() != nil
	case expectRequestBody:
		return resp.GetRequestBody() != nil
	case expectResponseBody:
		return resp.GetResponseBody() != nil
	}
	return false
}

func (x expect) String() string {
	return [...]string{"request headers", "response headers", "request body", "response body"}[x]
}

// failure turns a processing failure into what Envoy does with it.
func (e *extProcStream) failure(code int, details string) error {
	e.complete = true
	e.close()
	if e.cfg.upstream {
		e.s.dp.log.Error("upstream ext_proc failure; Envoy cannot reply from an upstream filter, so the try stalls until a timeout", "filter", e.cfg.name, "details", details)
		return errUpstreamStall
	}
	return &localReply{status: code, details: details}
}

func (e *extProcStream) grpcFailure(err error) error {
	if e.complete {
		return errProcessingDone
	}
	if errors.Is(err, io.EOF) {
		// The processor closed the stream with OK: Envoy continues without
		// it, even when failing closed.
		e.complete = true
		e.close()
		return errProcessingDone
	}
	st := status.Convert(err)
	if e.cfg.failureModeAllow {
		e.complete = true
		e.close()
		return errProcessingDone
	}
	// ext_proc.cc onGrpcError: "%s_gRPC_error_%i{%s}".
	details := fmt.Sprintf("ext_proc_error_gRPC_error_%d{%s}", st.Code(), st.Message())
	return e.failure(e.cfg.statusOnError, replaceAllEmptySpace(details))
}

func (e *extProcStream) timedOut() error {
	if e.cfg.failureModeAllow {
		e.complete = true
		e.close()
		return errProcessingDone
	}
	return e.failure(504, "ext_proc_error_per-message_timeout_exceeded")
}

// spurious handles a reply that does not fit: fail closed with 500 (Envoy
// 1.35+), or ignore the processor from now on with failure_mode_allow.
func (e *extProcStream) spurious(what string) error {
	e.s.dp.log.Warn("spurious ext_proc reply", "filter", e.cfg.name, "what", what)
	if e.cfg.failureModeAllow {
		e.complete = true
		e.close()
		return errProcessingDone
	}
	return e.failure(500, "ext_proc_error_spurious_message")
}

// immediateResponse is the local reply an ImmediateResponse asks for. Its
// header mutation follows the mutation rules; a status below 200 or unset
// becomes 200.
func (e *extProcStream) immediateResponse(ir *extprocsvc.ImmediateResponse) error {
	if e.cfg.upstream {
		e.s.dp.log.Error("ImmediateResponse from an upstream ext_proc filter is ignored by Envoy; the try stalls until a timeout", "filter", e.cfg.name)
		return errUpstreamStall
	}
	code := int(ir.GetStatus().GetCode())
	if code < 200 {
		code = 200
	}
	lr := &localReply{
		status:  code,
		body:    string(ir.GetBody()),
		details: replaceAllEmptySpace(ir.GetDetails()),
	}
	if hm := ir.GetHeaders(); hm != nil {
		lr.mutate = func(h *headerMap) {
			if err := e.applyHeaderMutation(hm, h, false, false); err != nil {
				e.s.dp.log.Error("ImmediateResponse header mutation failed", "err", err)
			}
		}
	}
	return lr
}

// replaceAllEmptySpace is Envoy's StringUtil::replaceAllEmptySpace, which
// response code details go through: every whitespace byte becomes '_'.
func replaceAllEmptySpace(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\n', '\v', '\f', '\r':
			return '_'
		}
		return r
	}, s)
}

// attributes evaluates request_attributes. Envoy prints non-scalar CEL
// values as strings and omits expressions that fail.
func (e *extProcStream) attributes() *structpb.Struct {
	out := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for _, a := range e.cfg.requestAttributes {
		var v *structpb.Value
		switch a.kind {
		case attrSourceAddress:
			v = structpb.NewStringValue(e.s.sourceAddress())
		case attrRequestPath:
			v = structpb.NewStringValue(e.s.req.value(":path"))
		case attrRequestMethod:
			v = structpb.NewStringValue(e.s.req.value(":method"))
		case attrRequestHost:
			v = structpb.NewStringValue(e.s.req.value(":authority"))
		case attrRequestID:
			if id, ok := e.s.req.get("x-request-id"); ok {
				v = structpb.NewStringValue(id)
			}
		case attrHostMetadata:
			if e.host == nil {
				continue // no host is selected in a downstream filter
			}
			f := e.host.cfg.metadata[a.ns].GetFields()[a.key]
			switch k := f.GetKind().(type) {
			case *structpb.Value_StringValue:
				v = structpb.NewStringValue(k.StringValue)
			case *structpb.Value_BoolValue:
				v = structpb.NewBoolValue(k.BoolValue)
			case *structpb.Value_NumberValue:
				v = structpb.NewNumberValue(k.NumberValue)
			case nil:
			default:
				b, _ := f.MarshalJSON()
				v = structpb.NewStringValue(string(b))
			}
		}
		if v != nil {
			out.Fields[a.expr] = v
		}
	}
	return out
}

// shouldRemoveContentLength is Envoy's rule (processor_state.h): the
// content-length cannot be kept when the body may change chunk by chunk, or
// when it is buffered without the headers being held for the processor.
func shouldRemoveContentLength(body extprocv3.ProcessingMode_BodySendMode, sendHeaders bool) bool {
	switch body {
	case extprocv3.ProcessingMode_STREAMED, extprocv3.ProcessingMode_BUFFERED_PARTIAL, extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED:
		return true
	case extprocv3.ProcessingMode_BUFFERED:
		return !sendHeaders
	}
	return false
}

func (e *extProcStream) modeFor(dir direction) (sendHeaders bool, body extprocv3.ProcessingMode_BodySendMode) {
	if dir == dirRequest {
		return e.mode.GetRequestHeaderMode() != extprocv3.ProcessingMode_SKIP, e.mode.GetRequestBodyMode()
	}
	return e.mode.GetResponseHeaderMode() != extprocv3.ProcessingMode_SKIP, e.mode.GetResponseBodyMode()
}

func headersMessage(dir direction, h *headerMap, eos bool) *extprocsvc.ProcessingRequest {
	hh := &extprocsvc.HttpHeaders{Headers: h.toProto(), EndOfStream: eos}
	if dir == dirRequest {
		return &extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_RequestHeaders{RequestHeaders: hh}}
	}
	return &extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_ResponseHeaders{ResponseHeaders: hh}}
}

func bodyMessage(dir direction, data []byte, eos bool) *extprocsvc.ProcessingRequest {
	b := &extprocsvc.HttpBody{Body: data, EndOfStream: eos}
	if dir == dirRequest {
		return &extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_RequestBody{RequestBody: b}}
	}
	return &extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_ResponseBody{ResponseBody: b}}
}

func expectHeaders(dir direction) expect {
	if dir == dirRequest {
		return expectRequestHeaders
	}
	return expectResponseHeaders
}

func expectBody(dir direction) expect {
	if dir == dirRequest {
		return expectRequestBody
	}
	return expectResponseBody
}

func headersReply(dir direction, r *extprocsvc.ProcessingResponse) *extprocsvc.CommonResponse {
	if dir == dirRequest {
		return r.GetRequestHeaders().GetResponse()
	}
	return r.GetResponseHeaders().GetResponse()
}

func bodyReply(dir direction, r *extprocsvc.ProcessingResponse) *extprocsvc.CommonResponse {
	if dir == dirRequest {
		return r.GetRequestBody().GetResponse()
	}
	return r.GetResponseBody().GetResponse()
}

// process runs the filter over one direction: the headers (h, mutated in
// place) and the body. It returns the body as the filter passes it on and
// whether there is one. limit is the buffer limit for BUFFERED bodies.
func (e *extProcStream) process(ctx context.Context, dir direction, h *headerMap, body bodySource, hasBody bool, limit int) (bodySource, bool, error) {
	if e.complete {
		return body, hasBody, nil
	}
	sendHeaders, bodyMode := e.modeFor(dir)
	e.headersHeld = sendHeaders
	if sendHeaders {
		// Envoy decides on content-length right after sending the headers,
		// with the mode in force before any override (ai-gateway #2391).
		removeCL := shouldRemoveContentLength(bodyMode, true)
		resp, err := e.exchange(ctx, headersMessage(dir, h, !hasBody), expectHeaders(dir))
		if removeCL {
			h.del("content-length")
		}
		if errors.Is(err, errProcessingDone) {
			return body, hasBody, nil
		}
		if err != nil {
			return nil, false, err
		}
		common := headersReply(dir, resp)
		sendHeaders, bodyMode = e.modeFor(dir) // after mode_override
		if hm := common.GetHeaderMutation(); hm != nil {
			if err := e.applyHeaderMutation(hm, h, common.GetStatus() == extprocsvc.CommonResponse_CONTINUE_AND_REPLACE, shouldRemoveContentLength(bodyMode, sendHeaders)); err != nil {
				return nil, false, e.failure(500, replaceAllEmptySpace(err.Error()))
			}
		}
		e.clearRouteCache(dir, common)
		if common.GetStatus() == extprocsvc.CommonResponse_CONTINUE_AND_REPLACE {
			// The reply replaces the whole body; nothing more of this
			// direction goes to the processor (processor_state.cc).
			e.setBodyMode(dir, extprocv3.ProcessingMode_NONE)
			e.headersHeld = false
			e.lastReplyOf(dir)
			if bm := common.GetBodyMutation(); bm != nil {
				h.del("content-length")
				var data []byte
				data = applyBodyMutation(bm, data)
				return &replacedBody{data: data, orig: body, origHasBody: hasBody}, true, nil
			}
			return body, hasBody, nil
		}
		if !hasBody || bodyMode == extprocv3.ProcessingMode_NONE {
			e.lastReplyOf(dir)
		}
	} else if shouldRemoveContentLength(bodyMode, false) {
		h.del("content-length")
	}
	if !hasBody {
		e.headersHeld = false
		return body, false, nil
	}
	switch bodyMode {
	case extprocv3.ProcessingMode_BUFFERED:
		data, err := readAll(ctx, body, limit)
		if err != nil {
			return nil, false, err
		}
		resp, err := e.exchange(ctx, bodyMessage(dir, data, true), expectBody(dir))
		if errors.Is(err, errProcessingDone) {
			return &bytesBody{data: data}, true, nil
		}
		if err != nil {
			return nil, false, err
		}
		common := bodyReply(dir, resp)
		// When the headers were sent, they are still held: the body reply
		// may change them and clear the route cache. When they were
		// skipped they have gone on, and header mutations are ignored.
		if hm := common.GetHeaderMutation(); hm != nil && e.headersHeld {
			sh, bm := e.modeFor(dir)
			if err := e.applyHeaderMutation(hm, h, false, shouldRemoveContentLength(bm, sh)); err != nil {
				return nil, false, e.failure(500, replaceAllEmptySpace(err.Error()))
			}
		}
		if bm := common.GetBodyMutation(); bm != nil {
			if cl, ok := h.get("content-length"); ok && e.headersHeld {
				// A kept content-length must match the new body (envoy#28515).
				if n, err := strconv.Atoi(cl); err == nil && n != len(bm.GetBody()) {
					return nil, false, e.failure(500, "mismatch_between_content_length_and_the_length_of_the_mutated_body")
				}
			}
			data = applyBodyMutation(bm, data)
		}
		e.clearRouteCache(dir, common)
		e.headersHeld = false
		return &bytesBody{data: data}, true, nil
	case extprocv3.ProcessingMode_BUFFERED_PARTIAL:
		return e.partial(ctx, dir, h, body, limit)
	case extprocv3.ProcessingMode_STREAMED:
		e.headersHeld = false
		return &streamedBody{e: e, dir: dir, src: body}, true, nil
	}
	e.headersHeld = false
	return body, true, nil
}

// partial is BUFFERED_PARTIAL: the body up to the buffer limit (or all of
// it, if shorter) goes in one message while the headers are held; the rest
// passes unprocessed.
func (e *extProcStream) partial(ctx context.Context, dir direction, h *headerMap, body bodySource, limit int) (bodySource, bool, error) {
	var buf []byte
	eos := false
	for !eos && len(buf) < limit {
		chunk, end, err := body.next(ctx)
		if err != nil {
			return nil, false, err
		}
		buf = append(buf, chunk...)
		eos = end
	}
	resp, err := e.exchange(ctx, bodyMessage(dir, buf, eos), expectBody(dir))
	rest := bodySource(&bytesBody{data: buf, more: !eos, then: body})
	if errors.Is(err, errProcessingDone) {
		return rest, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	common := bodyReply(dir, resp)
	if hm := common.GetHeaderMutation(); hm != nil {
		if err := e.applyHeaderMutation(hm, h, false, true); err != nil {
			return nil, false, e.failure(500, replaceAllEmptySpace(err.Error()))
		}
	}
	if bm := common.GetBodyMutation(); bm != nil {
		buf = applyBodyMutation(bm, buf)
	}
	e.clearRouteCache(dir, common)
	e.headersHeld = false
	e.complete = true // the rest passes through; nothing more is sent
	return &bytesBody{data: buf, more: !eos, then: body}, true, nil
}

// lastReplyOf closes the stream after the last reply Envoy expects on it
// (ext_proc.cc closeGrpcStreamIfLastRespReceived, on by default since
// 1.37): the request side's last reply when the response is not processed
// at all, the response side's last reply otherwise. BUFFERED bodies are
// left out, as Envoy leaves them out; their stream closes at the end.
func (e *extProcStream) lastReplyOf(dir direction) {
	if e.complete {
		return
	}
	if dir == dirRequest && (e.mode.GetResponseHeaderMode() != extprocv3.ProcessingMode_SKIP ||
		e.mode.GetResponseBodyMode() != extprocv3.ProcessingMode_NONE ||
		e.mode.GetResponseTrailerMode() == extprocv3.ProcessingMode_SEND) {
		return
	}
	e.complete = true
	e.close()
}

func (e *extProcStream) setBodyMode(dir direction, m extprocv3.ProcessingMode_BodySendMode) {
	if dir == dirRequest {
		e.mode.RequestBodyMode = m
	} else {
		e.mode.ResponseBodyMode = m
	}
}

// clearRouteCache applies clear_route_cache: request side only, downstream
// filters only, only together with a header mutation, and only while the
// headers are held (ENVOY-EXTPROC-NOTES §3).
func (e *extProcStream) clearRouteCache(dir direction, common *extprocsvc.CommonResponse) {
	if dir != dirRequest {
		return
	}
	if e.cfg.upstream {
		if common.GetClearRouteCache() {
			e.s.dp.log.Debug("clear_route_cache ignored in an upstream ext_proc filter", "filter", e.cfg.name)
		}
		return
	}
	if common.GetHeaderMutation() == nil || !e.headersHeld {
		return
	}
	switch e.cfg.routeCacheAction {
	case extprocv3.ExternalProcessor_CLEAR:
		e.s.clearRouteCache()
	case extprocv3.ExternalProcessor_DEFAULT:
		if common.GetClearRouteCache() {
			e.s.clearRouteCache()
		}
	}
}

func applyBodyMutation(bm *extprocsvc.BodyMutation, data []byte) []byte {
	switch m := bm.GetMutation().(type) {
	case *extprocsvc.BodyMutation_Body:
		return append([]byte(nil), m.Body...)
	case *extprocsvc.BodyMutation_ClearBody:
		if m.ClearBody {
			return nil
		}
	}
	return data
}

// applyHeaderMutation applies a HeaderMutation with Envoy's default
// mutation rules (mutation_rules.cc, ext_proc mutation_utils.cc):
// :authority/host, :method, :scheme and x-envoy-* cannot be changed (the
// change is ignored); pseudo-headers and host cannot be removed; appending
// to a pseudo-header is ignored; values come from raw_value; only the
// deprecated append flag is read. Invalid names or values, both value and
// raw_value, or exceeding the header limits fail the request.
func (e *extProcStream) applyHeaderMutation(hm *extprocsvc.HeaderMutation, h *headerMap, replacing, dropContentLength bool) error {
	if len(hm.GetRemoveHeaders()) > maxHeadersCount || len(hm.GetSetHeaders()) > maxHeadersCount {
		return fmt.Errorf("header mutation remove header count %d or set header count %d exceed the HCM header count limit %d",
			len(hm.GetRemoveHeaders()), len(hm.GetSetHeaders()), maxHeadersCount)
	}
	ignored := func(op, name string) {
		e.s.dp.log.Debug("ext_proc header mutation ignored by the mutation rules", "filter", e.cfg.name, "op", op, "header", name)
	}
	for _, name := range hm.GetRemoveHeaders() {
		if !validHeaderName(name) {
			return errors.New("invalid character in remove_headers mutation")
		}
		name = strings.ToLower(name)
		if strings.HasPrefix(name, ":") || name == "host" || !mutationAllowed(name) {
			ignored("remove", name)
			continue
		}
		h.del(name)
	}
	for _, sh := range hm.GetSetHeaders() {
		hv := sh.GetHeader()
		if hv == nil {
			continue
		}
		if hv.GetValue() != "" && len(hv.GetRawValue()) > 0 {
			return errors.New("only one of value or raw_value in the HeaderValue message should be set")
		}
		// raw_value is what Envoy reads; a header sent in value alone
		// becomes an empty header (envoy#31555).
		value := string(hv.GetRawValue())
		if !validHeaderName(hv.GetKey()) || !validHeaderValue(value) {
			return errors.New("invalid character in set_headers mutation")
		}
		name := strings.ToLower(hv.GetKey())
		appendMode := sh.GetAppend().GetValue() //nolint:staticcheck // ext_proc reads only the deprecated append flag (envoy#37139)
		switch {
		case replacing && name == ":method":
			// CONTINUE_AND_REPLACE may change the method.
		case !mutationAllowed(name):
			ignored("set", name)
			continue
		case strings.HasPrefix(name, ":") && appendMode && h.has(name):
			ignored("append", name)
			continue
		case name == ":status":
			if n, err := strconv.Atoi(value); err != nil || n < 200 || n > 999 {
				ignored("set", name)
				continue
			}
		case name == "content-length" && dropContentLength:
			ignored("set", name)
			continue
		}
		if appendMode && h.has(name) {
			h.add(name, value)
		} else {
			h.set(name, value)
		}
	}
	size := 0
	for _, en := range h.entries {
		size += len(en.key) + len(en.value)
	}
	if len(h.entries) > maxHeadersCount || size > maxHeadersBytes {
		return fmt.Errorf("header mutation causes end result header count %d or header size %d bytes, exceeding the count limit %d or the size limit %d kilobytes",
			len(h.entries), size, maxHeadersCount, maxHeadersBytes>>10)
	}
	return nil
}

// mutationAllowed is Envoy's default HeaderMutationRules checker.
func mutationAllowed(name string) bool {
	switch name {
	case "host", ":authority", ":method", ":scheme":
		return false // allow_all_routing is off by default
	}
	return !strings.HasPrefix(name, "x-envoy") // allow_envoy is off by default
}

// streamedBody sends each chunk to the processor and passes on its reply,
// in order (STREAMED). Header mutations and clear_route_cache in body
// replies have no effect any more: the headers have gone on.
type streamedBody struct {
	e   *extProcStream
	dir direction
	src bodySource
}

func (b *streamedBody) next(ctx context.Context) ([]byte, bool, error) {
	data, eos, err := b.src.next(ctx)
	if err != nil {
		return nil, false, err
	}
	if b.e.complete {
		return data, eos, nil
	}
	resp, err := b.e.exchange(ctx, bodyMessage(b.dir, data, eos), expectBody(b.dir))
	if errors.Is(err, errProcessingDone) {
		return data, eos, nil
	}
	if err != nil {
		return nil, false, err
	}
	if bm := bodyReply(b.dir, resp).GetBodyMutation(); bm != nil {
		if bm.GetStreamedResponse() != nil {
			return nil, false, b.e.spurious("streamed_response outside FULL_DUPLEX_STREAMED")
		}
		data = applyBodyMutation(bm, data)
	}
	if eos {
		b.e.lastReplyOf(b.dir)
	}
	return data, eos, nil
}

// receiveMetadata merges a reply's dynamic_metadata into the stream's, for
// the namespaces the filter may write (receiving_namespaces.untyped);
// others are dropped, as Envoy drops them. Within a namespace, fields are
// merged: a field written again is replaced.
func (e *extProcStream) receiveMetadata(m *structpb.Struct) {
	for ns, v := range m.GetFields() {
		if !slices.Contains(e.cfg.receivingNamespaces, ns) {
			e.s.dp.log.Debug("ext_proc dynamic metadata in a namespace the filter may not write; dropped", "filter", e.cfg.name, "namespace", ns)
			continue
		}
		if v.GetStructValue() == nil {
			continue
		}
		e.s.setDynamicMetadata(ns, v.GetStructValue())
	}
}
