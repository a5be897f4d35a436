package testdataplane

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Causes that end a try or the routed part of a stream.
var (
	errRouteTimeout  = errors.New("route timeout")
	errPerTryTimeout = errors.New("per-try timeout")
	errPerTryIdle    = errors.New("per-try idle timeout")
)

// route is the router filter: it matches (again, if a filter cleared the
// route cache), answers direct responses, buffers the body for retries,
// and forwards with the route's retry policy.
func (s *stream) route(body bodySource, hasBody bool) error {
	rt := s.currentRoute()
	if rt == nil {
		return &localReply{status: 404, details: "route_not_found", flags: []string{"NR"}}
	}
	if rt.direct != nil {
		return &localReply{
			status: rt.direct.status, body: rt.direct.body, details: "direct_response",
			mutate: func(h *headerMap) { s.finalizeResponseHeaders(rt, h) },
		}
	}
	s.upstreamCluster = rt.cluster
	cl := s.snap.clusters[rt.cluster]
	if cl == nil {
		return &localReply{status: 503, details: "cluster_not_found", flags: []string{"NC"}}
	}
	if rt.hasIdleTimeout {
		// The route's idle_timeout replaces the HCM's stream_idle_timeout.
		s.idle.setTimeout(rt.idleTimeout)
	}
	// The router keeps the body so that retries can replay it, as the
	// downstream filters left it. Above the buffer limit it stops keeping
	// it: the rest streams to the one try, which cannot be retried
	// (ENVOY-EXTPROC-NOTES §9).
	var data []byte
	var tail bodySource
	for hasBody {
		chunk, eos, err := body.next(s.ctx)
		if err != nil {
			return requestBodyErr(err)
		}
		data = append(data, chunk...)
		if eos {
			break
		}
		if len(data) > s.lc.bufferLimit {
			tail = body
			break
		}
	}
	// The route timeout starts once the router has the whole request and
	// covers every try and the response until its last byte.
	ctx := s.ctx
	if rt.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(s.ctx, rt.timeout, errRouteTimeout)
		defer cancel()
	}
	s.finalizeRequestHeaders(rt)
	res, err := s.forward(ctx, rt, cl, requestBody{data: data, tail: tail, present: hasBody})
	if err != nil {
		return err
	}
	return s.respond(ctx, rt, res)
}

// finalizeRequestHeaders applies the route's request header changes and
// the router's own headers.
func (s *stream) finalizeRequestHeaders(rt *route) {
	for _, k := range rt.requestHeadersToRemove {
		s.req.del(k)
	}
	applyHeaderOptions(s.req, rt.requestHeadersToAdd)
	if rt.hasPrefixRewrite {
		if p := s.req.value(":path"); strings.HasPrefix(p, rt.prefix) {
			s.req.set("x-envoy-original-path", p)
			s.req.set(":path", rt.prefixRewrite+p[len(rt.prefix):])
		}
	}
	if rt.hostRewriteLiteral != "" {
		s.req.set(":authority", rt.hostRewriteLiteral)
	}
	if !s.hcm.suppressEnvoyHeaders && rt.timeout > 0 {
		expected := rt.timeout
		if rt.retry != nil && rt.retry.perTryTimeout > 0 && rt.retry.perTryTimeout < expected {
			expected = rt.retry.perTryTimeout
		}
		s.req.set("x-envoy-expected-rq-timeout-ms", strconv.FormatInt(expected.Milliseconds(), 10))
	}
}

// finalizeResponseHeaders applies the route's and the route
// configuration's response header changes.
func (s *stream) finalizeResponseHeaders(rt *route, h *headerMap) {
	for _, k := range rt.responseHeadersToRemove {
		h.del(k)
	}
	applyHeaderOptions(h, rt.responseHeadersToAdd)
	if s.table != nil {
		for _, k := range s.table.responseHeadersToRemove {
			h.del(k)
		}
	}
}

type tryKind int

const (
	// tryAborted: the try ended for a reason that ends the stream (err).
	tryAborted tryKind = iota
	tryResponse
	tryConnectFailure
	tryReset
	tryOverflow
	tryPerTryTimeout
	tryPerTryIdleTimeout
)

// tryResult is what one try to one host came to.
type tryResult struct {
	kind      tryKind
	host      *host
	addr      string // UPSTREAM_HOST
	failure   string // UPSTREAM_TRANSPORT_FAILURE_REASON
	timeout   bool   // a connect failure that was a timeout
	err       error  // ends the whole stream (route timeout, client gone)
	headers   *headerMap
	body      bodySource
	hasBody   bool
	started   time.Time
	headersAt time.Time
	cleanup   func()
}

func (r *tryResult) status() int {
	n, _ := strconv.Atoi(r.headers.value(":status"))
	return n
}

// outcome is what outlier detection learns from the try.
func (r *tryResult) outcome() (outcome, bool) {
	switch r.kind {
	case tryResponse:
		return outcome{status: r.status()}, true
	case tryConnectFailure, tryReset:
		return outcome{status: 503, local: true}, true
	case tryPerTryTimeout, tryPerTryIdleTimeout:
		return outcome{status: 504, local: true}, true
	}
	return outcome{}, false
}

// forward runs tries until one gives a response that is not retried, or
// the retry policy gives up. Each retry waits Envoy's jittered back-off
// and, with previous_priorities, leaves out the priorities already tried.
func (s *stream) forward(ctx context.Context, rt *route, cl *cluster, body requestBody) (*tryResult, error) {
	p := rt.retry
	retriesLeft := 0
	if p != nil && body.tail == nil {
		retriesLeft = p.numRetries
	}
	bo := newBackOff(p)
	excluded := map[int]bool{}
	var attempted []*host
	retried := false
	for {
		h := cl.choose(excluded)
		if h == nil {
			return nil, &localReply{status: 503, body: "no healthy upstream", details: "no_healthy_upstream", flags: []string{"UH"}}
		}
		s.attempts++
		if retried {
			cl.activeRetries.Add(1)
		}
		res := s.try(ctx, rt, cl, h, body)
		if retried {
			cl.activeRetries.Add(-1)
		}
		s.upstreamHost = res.addr
		if res.failure != "" {
			s.upstreamFailure = res.failure
		}
		if o, ok := res.outcome(); ok {
			cl.report(h, o)
		}
		if res.err != nil {
			res.cleanup()
			return nil, s.routeFailure(res.err)
		}
		if !retryable(p, res) {
			return s.finalTry(res, retried, false)
		}
		if retriesLeft == 0 {
			return s.finalTry(res, retried, true)
		}
		if cl.activeRetries.Load() >= int64(cl.cfg.maxRetries) {
			// The retry circuit breaker is open: no retry, the response
			// stands.
			return s.finalTry(res, retried, false)
		}
		retriesLeft--
		retried = true
		res.cleanup()
		attempted = append(attempted, h)
		if p.previousPriorities > 0 && len(attempted)%int(p.previousPriorities) == 0 {
			for _, a := range attempted {
				excluded[a.priority] = true
			}
		}
		t := time.NewTimer(bo.next())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, s.routeFailure(context.Cause(ctx))
		case <-t.C:
		}
	}
}

// retryable applies retry_on to a try (RetryStateImpl::wouldRetryFromHeaders
// and wouldRetryFromReset).
func retryable(p *retryPolicy, r *tryResult) bool {
	if p == nil {
		return false
	}
	on := p.on
	switch r.kind {
	case tryResponse:
		if r.headers.has("x-envoy-overloaded") {
			return false
		}
		code := r.status()
		return (on["5xx"] && code >= 500 && code <= 599) ||
			(on["gateway-error"] && (code == 502 || code == 503 || code == 504)) ||
			(on["retriable-4xx"] && code == 409) ||
			(on["retriable-status-codes"] && slices.Contains(p.retriableCodes, code))
	case tryConnectFailure:
		return on["connect-failure"] || on["reset"] || on["5xx"] || on["gateway-error"]
	case tryReset:
		return on["reset"] || on["5xx"] || on["gateway-error"]
	case tryPerTryTimeout, tryPerTryIdleTimeout:
		// Non-hedged per-try timeouts are retried only under 5xx or
		// gateway-error (retry_state_impl.cc).
		return on["5xx"] || on["gateway-error"]
	}
	return false // overflow is never retried
}

// finalTry turns the last try into the stream's response or local reply.
func (s *stream) finalTry(res *tryResult, retried, limitExceeded bool) (*tryResult, error) {
	if limitExceeded {
		s.addFlags("URX")
	}
	if res.kind == tryResponse {
		return res, nil
	}
	res.cleanup()
	resetBody := func(reason string) string {
		if retried {
			return "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: " + reason
		}
		return "upstream connect error or disconnect/reset before headers. reset reason: " + reason
	}
	switch res.kind {
	case tryConnectFailure:
		reason := "connection failure"
		if res.timeout {
			reason = "connection timeout"
		}
		body := resetBody(reason)
		if res.failure != "" {
			body += ", transport failure reason: " + res.failure
		}
		return nil, &localReply{status: 503, body: body, details: "upstream_reset_before_response_started{" + strings.ReplaceAll(reason, " ", "_") + "}", flags: []string{"UF"}}
	case tryReset:
		return nil, &localReply{status: 503, body: resetBody("connection termination"), details: "upstream_reset_before_response_started{connection_termination}", flags: []string{"UC"}}
	case tryOverflow:
		return nil, &localReply{status: 503, body: resetBody("overflow"), details: "upstream_reset_before_response_started{overflow}", flags: []string{"UO"}}
	case tryPerTryTimeout:
		return nil, &localReply{status: 504, body: "upstream request timeout", details: "upstream_per_try_timeout", flags: []string{"UT"}}
	case tryPerTryIdleTimeout:
		return nil, &localReply{status: 504, body: "upstream request timeout", details: "upstream_per_try_idle_timeout", flags: []string{"UT"}}
	}
	return nil, errors.New("unknown try outcome")
}

// routeFailure is what ends a routed stream before a response was chosen.
func (s *stream) routeFailure(cause error) error {
	switch {
	case errors.Is(cause, errRouteTimeout):
		return &localReply{status: 504, body: "upstream request timeout", details: "upstream_response_timeout", flags: []string{"UT"}}
	case errors.Is(cause, errStreamIdle):
		return errStreamIdle
	case errors.Is(cause, context.Canceled):
		return errDownstreamGone
	}
	return cause
}

// tryTimers are the per-try timeout and per-try idle timeout. Like Envoy's,
// they start once the try has a connection.
type tryTimers struct {
	perTry, idle time.Duration
	cancel       context.CancelCauseFunc

	mu      sync.Mutex
	started bool
	stopped bool
	tTry    *time.Timer
	tIdle   *time.Timer
}

func (t *tryTimers) start() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.started || t.stopped {
		return
	}
	t.started = true
	if t.perTry > 0 {
		t.tTry = time.AfterFunc(t.perTry, func() { t.cancel(errPerTryTimeout) })
	}
	if t.idle > 0 {
		t.tIdle = time.AfterFunc(t.idle, func() { t.cancel(errPerTryIdle) })
	}
}

// activity resets the idle timer when upstream data arrives.
func (t *tryTimers) activity() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tIdle != nil && !t.stopped {
		t.tIdle.Reset(t.idle)
	}
}

func (t *tryTimers) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	if t.tTry != nil {
		t.tTry.Stop()
	}
	if t.tIdle != nil {
		t.tIdle.Stop()
	}
}

// try sends the request to one host: circuit breakers, the per-try header
// changes (auto_host_rewrite, :scheme), the cluster's upstream filters
// (ext_proc runs once per try and sees this host's metadata), then the
// codec; and back through the upstream filters with the response.
//
// The request headers are the stream's own map, as in Envoy, where every
// try's upstream filters see (and change) downstreamHeaders(): a change an
// upstream filter made on one try is still there on the next. The body is
// a fresh copy of the router's buffer each time.
func (s *stream) try(ctx context.Context, rt *route, cl *cluster, h *host, rb requestBody) *tryResult {
	res := &tryResult{host: h, addr: h.address(), started: time.Now(), cleanup: func() {}}
	if cl.activeRequests.Load() >= int64(cl.cfg.maxRequests) || cl.pending.Load() >= int64(cl.cfg.maxPending) {
		res.kind = tryOverflow
		return res
	}
	cl.activeRequests.Add(1)
	tctx, tcancel := context.WithCancelCause(ctx)
	timers := &tryTimers{cancel: tcancel}
	if rt.retry != nil {
		timers.perTry, timers.idle = rt.retry.perTryTimeout, rt.retry.perTryIdleTimeout
	}
	var filters []*extProcStream
	var respBody io.Closer
	var reqBody *sourceReader
	res.cleanup = sync.OnceFunc(func() {
		timers.stop()
		tcancel(nil)
		if reqBody != nil {
			_ = reqBody.Close() // waits for the transport's read in progress
		}
		if respBody != nil {
			_ = respBody.Close()
		}
		for _, f := range filters {
			f.close()
		}
		cl.activeRequests.Add(-1)
	})

	// Envoy rewrites :authority when the connection pool is ready, which
	// happens before the upstream filters see the headers when a pooled
	// connection is free and after when one must be opened; the harness
	// always does it first. :scheme stays the downstream one (Envoy keeps a
	// valid scheme unless the HCM asks it to match the upstream).
	if rt.autoHostRewrite && h.cfg.hostname != "" {
		s.req.set(":authority", h.cfg.hostname)
	}
	var body bodySource = emptyBody{}
	if rb.present {
		body = &bytesBody{data: slices.Clone(rb.data), more: rb.tail != nil, then: rb.tail}
	}
	tryHasBody := rb.present
	for _, fc := range cl.cfg.upstreamExtProc {
		f := newExtProcStream(s, fc, h)
		filters = append(filters, f)
		var err error
		body, tryHasBody, err = f.process(tctx, dirRequest, s.req, body, tryHasBody, s.lc.bufferLimit)
		if err != nil {
			return s.tryFailed(ctx, tctx, res, timers, requestBodyErr(err))
		}
	}
	// Go's transport reads the body from its own goroutine, as the codec
	// would pull it through the filters.
	reqBody = &sourceReader{ctx: tctx, src: body, done: make(chan struct{})}
	req, err := s.upstreamRequest(tctx, h, reqBody, tryHasBody)
	if err != nil {
		return s.tryFailed(ctx, tctx, res, timers, err)
	}
	pendingDone := sync.OnceFunc(func() { cl.pending.Add(-1) })
	cl.pending.Add(1)
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		res.addr = info.Conn.RemoteAddr().String()
		pendingDone()
		timers.start()
	}}
	resp, err := h.roundTripper().RoundTrip(req.WithContext(httptrace.WithClientTrace(tctx, trace))) //nolint:bodyclose // closed by res.cleanup
	pendingDone()
	if err != nil {
		if bodyErr := reqBody.failure(); bodyErr != nil {
			err = bodyErr
		}
		return s.tryFailed(ctx, tctx, res, timers, err)
	}
	respBody = resp.Body
	// The request's filters must be done with their streams before the
	// response goes through them (one goroutine per ext_proc stream).
	select {
	case <-reqBody.done:
	case <-tctx.Done():
		return s.tryFailed(ctx, tctx, res, timers, context.Cause(tctx))
	}
	res.headersAt = time.Now()
	timers.activity()
	s.idle.reset()

	rh := &headerMap{}
	rh.add(":status", strconv.Itoa(resp.StatusCode))
	rh.fromHTTP(resp.Header)
	for _, k := range hopByHop {
		rh.del(k)
	}
	var respSrc bodySource = newReaderBody(resp.Body, func(int) {
		timers.activity()
		s.idle.reset()
	}, func(error) error {
		return s.upstreamBodyError(ctx, tctx)
	})
	respHasBody := resp.Body != http.NoBody && resp.ContentLength != 0 && s.r.Method != http.MethodHead
	for i := len(filters) - 1; i >= 0; i-- {
		respSrc, respHasBody, err = filters[i].process(tctx, dirResponse, rh, respSrc, respHasBody, s.lc.bufferLimit)
		if err != nil {
			return s.tryFailed(ctx, tctx, res, timers, responseBodyErr(err))
		}
	}
	res.kind, res.headers, res.body, res.hasBody = tryResponse, rh, respSrc, respHasBody
	return res
}

// upstreamBodyError classifies a failure while reading the upstream body.
func (s *stream) upstreamBodyError(ctx, tctx context.Context) error {
	switch cause := context.Cause(tctx); {
	case errors.Is(cause, errPerTryIdle):
		return &streamReset{details: "upstream_per_try_idle_timeout", flags: []string{"UT"}}
	case errors.Is(cause, errPerTryTimeout):
		return &streamReset{details: "upstream_per_try_timeout", flags: []string{"UT"}}
	case ctx.Err() != nil:
		return s.bodyContextError(ctx)
	}
	return &streamReset{details: "upstream_reset_after_response_started{connection_termination}", flags: []string{"UC"}}
}

// bodyContextError is why the routed context ended while a body flowed.
func (s *stream) bodyContextError(ctx context.Context) error {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errRouteTimeout):
		return &streamReset{details: "upstream_response_timeout", flags: []string{"UT"}}
	case errors.Is(cause, errStreamIdle):
		return errStreamIdle
	default:
		return errDownstreamGone
	}
}

// tryFailed classifies a try that got no response.
func (s *stream) tryFailed(ctx, tctx context.Context, res *tryResult, timers *tryTimers, err error) *tryResult {
	if errors.Is(err, errUpstreamStall) {
		// Envoy started the connection in parallel with the upstream
		// filters, so the per-try timers run while the filter is stuck.
		timers.start()
		<-tctx.Done()
	}
	cause := context.Cause(tctx)
	switch {
	case errors.Is(cause, errPerTryTimeout):
		res.kind = tryPerTryTimeout
	case errors.Is(cause, errPerTryIdle):
		res.kind = tryPerTryIdleTimeout
	case ctx.Err() != nil:
		res.err = context.Cause(ctx)
	case errors.As(err, new(*localReply)), errors.As(err, new(*streamReset)):
		// A filter's reply or reset (a downstream filter streaming the
		// request body, a buffer overflow) ends the stream; no retry.
		res.err = err
	default:
		var ce *connectError
		if errors.As(err, &ce) {
			res.kind, res.failure, res.timeout = tryConnectFailure, ce.reason, ce.timeout
		} else {
			res.kind = tryReset
		}
	}
	return res
}

// upstreamRequest is the codec's request: the stream's headers, minus
// pseudo and hop-by-hop ones, to this host.
func (s *stream) upstreamRequest(ctx context.Context, h *host, body io.ReadCloser, hasBody bool) (*http.Request, error) {
	host := h.address()
	if h.cfg.network == "unix" {
		host = "unix"
	}
	u := &url.URL{Scheme: h.scheme(), Host: host, Opaque: s.req.value(":path")}
	req, err := http.NewRequestWithContext(ctx, s.req.value(":method"), u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.URL = u
	req.Host = s.req.value(":authority")
	req.Header = s.req.toHTTP()
	req.Header.Del("Content-Length")
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""} // Go would add its own
	}
	if !hasBody {
		req.ContentLength = 0
		req.Body = http.NoBody
		_ = body.Close()
		return req, nil
	}
	req.Body = body
	// Without a content-length Envoy's HTTP/1.1 codec sends the body
	// chunked; with one, the codec sends it as it is.
	req.ContentLength = -1
	if cl, ok := s.req.get("content-length"); ok {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			req.ContentLength = n
		}
	}
	return req, nil
}

// respond sends the chosen upstream response through the downstream
// filters (in reverse order) to the client, chunk by chunk.
func (s *stream) respond(ctx context.Context, rt *route, res *tryResult) error {
	defer res.cleanup()
	h := res.headers
	if !s.hcm.suppressEnvoyHeaders {
		h.set("x-envoy-upstream-service-time", strconv.FormatInt(res.headersAt.Sub(res.started).Milliseconds(), 10))
	}
	s.finalizeResponseHeaders(rt, h)
	s.details = "via_upstream"
	body, hasBody := res.body, res.hasBody
	for i := len(s.filters) - 1; i >= 0; i-- {
		var err error
		body, hasBody, err = s.filters[i].process(ctx, dirResponse, h, body, hasBody, s.lc.bufferLimit)
		if err != nil {
			err = responseBodyErr(err)
			if ctx.Err() != nil {
				return s.routeFailure(context.Cause(ctx))
			}
			return err
		}
	}
	s.writeResponseHeaders(h)
	for hasBody {
		data, eos, err := body.next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return s.bodyContextError(ctx)
			}
			return err
		}
		if err := s.writeBody(data); err != nil {
			return err
		}
		if eos {
			break
		}
	}
	return nil
}

// backOff is Envoy's JitteredExponentialBackOffStrategy: retry n waits a
// random time in [0, (2^n − 1) × base), capped at max.
type backOff struct {
	base, max time.Duration
	n         int
}

func newBackOff(p *retryPolicy) *backOff {
	if p == nil {
		return &backOff{base: defaultRetryBaseBackOff, max: 10 * defaultRetryBaseBackOff, n: 1}
	}
	return &backOff{base: p.baseInterval, max: p.maxInterval, n: 1}
}

func (b *backOff) next() time.Duration {
	limit := time.Duration((int64(1)<<b.n)-1) * b.base
	if limit <= b.max {
		b.n++
	}
	if limit <= 0 {
		return 0
	}
	return min(time.Duration(randIntn(int(limit))), b.max)
}

// requestBody is what the router holds of the request body: all of it, or
// the part up to the buffer limit and the rest still to come (tail).
type requestBody struct {
	data    []byte
	tail    bodySource
	present bool
}

// sourceReader feeds a try's body to Go's transport, which reads it from its
// own goroutine. Close waits for a read in progress, so the filters' streams
// are never used by two goroutines at once.
type sourceReader struct {
	ctx context.Context
	src bodySource

	mu       sync.Mutex
	buf      []byte
	eos      bool
	closed   bool
	err      error
	done     chan struct{}
	doneOnce sync.Once
}

func (r *sourceReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.buf) == 0 {
		switch {
		case r.closed:
			return 0, errors.New("request body closed")
		case r.err != nil:
			return 0, r.err
		case r.eos:
			r.finish()
			return 0, io.EOF
		}
		data, eos, err := r.src.next(r.ctx)
		r.buf, r.eos, r.err = data, eos, err
		if err != nil {
			r.finish()
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *sourceReader) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.finish()
	return nil
}

func (r *sourceReader) finish() { r.doneOnce.Do(func() { close(r.done) }) }

// failure is the body's own error (a filter's local reply, say), which
// explains a failed round trip better than the transport's error does.
func (r *sourceReader) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}
