package testdataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/structpb"
)

// Causes that end a stream's context.
var (
	errStreamIdle     = errors.New("stream idle timeout")
	errDownstreamGone = errors.New("downstream connection terminated")
)

// runningListener is a bound listener serving HTTP through one HCM.
type runningListener struct {
	dp  *DataPlane
	cfg atomic.Pointer[listenerConfig]

	mu  sync.Mutex
	ln  net.Listener
	srv *http.Server
}

func newRunningListener(d *DataPlane, lc *listenerConfig) *runningListener {
	l := &runningListener{dp: d}
	l.cfg.Store(lc)
	return l
}

func (l *runningListener) config() *listenerConfig { return l.cfg.Load() }

func (l *runningListener) serving() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.srv != nil
}

func (l *runningListener) boundAddr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln == nil {
		return ""
	}
	return l.ln.Addr().String()
}

// bind takes the listener's address. Envoy binds a listener when it is
// added, before it has warmed, so a bind failure refuses the LDS update.
func (l *runningListener) bind() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return nil
	}
	lc := l.config()
	ln, err := net.Listen("tcp", lc.address)
	if err != nil {
		return fmt.Errorf("cannot bind %s: %w", lc.address, err)
	}
	l.ln = ln
	return nil
}

// start serves HTTP/1.1 (and, with codec_type AUTO, HTTP/2 with prior
// knowledge, as Envoy's AUTO codec detects it) once the listener has warmed.
func (l *runningListener) start() error {
	if err := l.bind(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		return nil
	}
	lc := l.config()
	var p http.Protocols
	p.SetHTTP1(true)
	if !lc.hcm.http1Only {
		p.SetUnencryptedHTTP2(true)
	}
	srv := &http.Server{
		Handler:           l,
		Protocols:         &p,
		ReadHeaderTimeout: time.Minute,
		// Envoy's max_request_headers_kb default; Go answers 431 above it,
		// as Envoy does.
		MaxHeaderBytes: maxHeadersBytes,
		ErrorLog:       slog.NewLogLogger(l.dp.log.Handler(), slog.LevelDebug),
	}
	l.srv = srv
	ln := l.ln
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.dp.log.Error("listener stopped", "listener", lc.name, "err", err)
		}
	}()
	l.dp.log.Info("listener serving", "listener", lc.name, "address", ln.Addr().String())
	return nil
}

// drainTime bounds how long a closing listener lets requests in flight
// finish (Envoy drains for drain_time_s; a harness need not wait long).
const drainTime = 2 * time.Second

// close stops accepting, lets requests in flight finish (and log) for up
// to drainTime, then closes what is left.
func (l *runningListener) close() error {
	l.mu.Lock()
	srv, ln := l.srv, l.ln
	l.ln, l.srv = nil, nil
	l.mu.Unlock()
	if srv == nil {
		if ln != nil {
			return ln.Close()
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), drainTime)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return srv.Close()
	}
	return nil
}

func (l *runningListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	lc := l.config()
	snap := l.dp.snap.Load()
	s := &stream{
		dp:    l.dp,
		lc:    lc,
		hcm:   lc.hcm,
		snap:  snap,
		table: snap.routes[lc.hcm.rdsName],
		w:     w,
		r:     r,
		start: time.Now(),
		flags: map[string]bool{},
	}
	s.run()
}

// localReply is a response Envoy makes itself (sendLocalReply): from the
// router, the connection manager, or an ext_proc ImmediateResponse. Local
// replies do not go through ext_proc's response processing (since the
// CVE-2025-30157 fix).
type localReply struct {
	status  int
	body    string
	details string
	flags   []string
	mutate  func(*headerMap)
}

func (l *localReply) Error() string {
	return fmt.Sprintf("local reply %d (%s)", l.status, l.details)
}

// streamReset ends a stream whose response has started: the only thing
// left to do (HTTP/1.1: close the connection mid-body; HTTP/2: RST_STREAM).
type streamReset struct {
	details string
	flags   []string
}

func (r *streamReset) Error() string { return "stream reset: " + r.details }

// stream is one HTTP request through the HCM, its filters and the router.
type stream struct {
	dp    *DataPlane
	lc    *listenerConfig
	hcm   *hcmConfig
	snap  *snapshot
	table *routeTable
	w     http.ResponseWriter
	r     *http.Request
	start time.Time

	ctx    context.Context
	cancel context.CancelCauseFunc
	idle   *idleTimer

	req     *headerMap
	remote  netip.AddrPort // the trusted client address
	filters []*extProcStream

	routeCached bool
	cachedRoute *route

	// What the access log reports.
	protocol       string
	respStarted    bool
	respHeaders    *headerMap
	code           int
	bytesReceived  atomic.Int64
	bytesSent      int64
	declaredLength int64 // the response's content-length, -1 if none
	flags          map[string]bool
	// dynMeta is the stream's dynamic metadata (namespace → fields), as
	// processors wrote it; read by local reply mappers.
	dynMetaMu       sync.Mutex
	dynMeta         map[string]map[string]*structpb.Value
	details         string
	upstreamCluster string
	upstreamHost    string
	upstreamFailure string
	attempts        int
	aborted         bool
}

func (s *stream) run() {
	ctx, cancel := context.WithCancelCause(s.r.Context())
	s.ctx, s.cancel = ctx, cancel
	s.idle = newIdleTimer(s.hcm.streamIdleTimeout, func() { cancel(errStreamIdle) })
	s.protocol = "HTTP/1.1"
	if s.r.ProtoMajor == 2 {
		s.protocol = "HTTP/2"
	}
	err := s.serve()
	if err != nil {
		s.fail(err)
	}
	s.idle.stop()
	for _, f := range s.filters {
		f.close()
	}
	cancel(nil)
	s.logAccess()
	if s.aborted {
		// Resets the stream: net/http closes an HTTP/1.1 connection (the
		// client sees a truncated body) and resets an HTTP/2 stream.
		panic(http.ErrAbortHandler)
	}
}

func (s *stream) serve() error {
	if err := s.decodeHeaders(); err != nil {
		return err
	}
	// Envoy matches the route when the headers arrive, before any filter;
	// filters may clear it (clear_route_cache) so the router matches again.
	s.currentRoute()
	body := bodySource(newReaderBody(s.r.Body, func(n int) {
		s.bytesReceived.Add(int64(n))
		s.idle.reset()
	}, func(err error) error {
		return &streamReset{details: "downstream_remote_disconnect", flags: []string{"DC"}}
	}))
	hasBody := s.r.ContentLength != 0
	for _, cfg := range s.hcm.extProc {
		f := newExtProcStream(s, cfg, nil)
		s.filters = append(s.filters, f)
		var err error
		body, hasBody, err = f.process(s.ctx, dirRequest, s.req, body, hasBody, s.lc.bufferLimit)
		if err != nil {
			return requestBodyErr(err)
		}
	}
	return s.route(body, hasBody)
}

// requestBodyErr and responseBodyErr turn a buffer overflow into Envoy's
// local reply for its direction.
func requestBodyErr(err error) error {
	if errors.Is(err, errBodyTooLarge) {
		return &localReply{status: 413, body: "Payload Too Large", details: "request_payload_too_large"}
	}
	return err
}

func responseBodyErr(err error) error {
	if errors.Is(err, errBodyTooLarge) {
		return &localReply{status: 500, body: "Internal Server Error", details: "response_payload_too_large"}
	}
	return err
}

// fail turns whatever ended the stream into a local reply, a reset, or
// nothing (when the client has gone).
func (s *stream) fail(err error) {
	var lr *localReply
	var rs *streamReset
	switch {
	case s.r.Context().Err() != nil || errors.Is(err, errDownstreamGone):
		s.addFlags("DC")
		s.details = "downstream_remote_disconnect"
		s.aborted = s.respStarted
	case errors.As(err, &lr):
		s.sendLocalReply(lr)
	case errors.As(err, &rs):
		s.reset(rs.details, rs.flags...)
	case errors.Is(err, errStreamIdle):
		if s.respStarted {
			s.reset("stream_idle_timeout", "SI")
		} else {
			s.sendLocalReply(&localReply{status: 408, body: "stream timeout", details: "stream_idle_timeout", flags: []string{"SI"}})
		}
	default:
		s.dp.log.Error("request failed inside the test data plane", "err", err)
		if s.respStarted {
			s.reset("internal_error")
		} else {
			s.sendLocalReply(&localReply{status: 500, body: "test data plane error: " + err.Error(), details: "test_data_plane_error"})
		}
	}
}

func (s *stream) addFlags(flags ...string) {
	for _, f := range flags {
		s.flags[f] = true
	}
}

func (s *stream) reset(details string, flags ...string) {
	s.addFlags(flags...)
	if s.details == "" || s.details == "via_upstream" {
		s.details = details
	}
	s.aborted = true
}

// sendLocalReply writes a local reply, or resets the stream if the response
// has already started.
func (s *stream) sendLocalReply(lr *localReply) {
	if s.respStarted {
		s.reset(lr.details, lr.flags...)
		return
	}
	s.details = lr.details
	s.addFlags(lr.flags...)
	body, contentType := lr.body, "text/plain"
	if b, ct, ok := s.mapLocalReply(lr); ok {
		body, contentType = b, ct
	}
	h := &headerMap{}
	h.add(":status", strconv.Itoa(lr.status))
	if body != "" {
		h.add("content-type", contentType)
	}
	h.add("content-length", strconv.Itoa(len(body)))
	if lr.mutate != nil {
		lr.mutate(h)
	}
	s.writeResponseHeaders(h)
	if body != "" && s.r.Method != http.MethodHead {
		_ = s.writeBody([]byte(body))
	}
}

// writeResponseHeaders sends the response headers with the connection
// manager's changes: server overwritten, date fresh, hop-by-hop removed.
func (s *stream) writeResponseHeaders(h *headerMap) {
	h.set("server", s.hcm.serverName)
	h.del("date")
	if s.hcm.alwaysSetRequestIDInResponse {
		if id, ok := s.req.get("x-request-id"); ok {
			h.set("x-request-id", id)
		}
	}
	code, err := strconv.Atoi(h.value(":status"))
	if err != nil || code < 100 || code > 999 {
		code = 502
	}
	wh := s.w.Header()
	for k := range wh {
		delete(wh, k)
	}
	for k, v := range h.toHTTP() {
		wh[k] = v
	}
	if _, ok := wh["Content-Type"]; !ok {
		wh["Content-Type"] = nil // no content sniffing: Envoy adds no content-type
	}
	s.declaredLength = -1
	if cl, ok := h.get("content-length"); ok {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			s.declaredLength = n
		}
	}
	s.w.WriteHeader(code)
	s.respStarted = true
	s.code = code
	s.respHeaders = h
	s.idle.reset()
}

// writeBody sends one chunk and flushes it, so streamed responses (SSE)
// reach the client as they arrive.
func (s *stream) writeBody(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	if s.declaredLength >= 0 && s.bytesSent+int64(len(data)) > s.declaredLength {
		// Envoy's HTTP/1 codec writes what it is given after a stale
		// content-length; the client reads declaredLength bytes and the
		// rest is garbage on the connection. Go refuses to write past the
		// declared length, so the harness writes up to it and resets.
		s.dp.log.Warn("response body longer than its content-length (a processor changed the body without fixing content-length); truncating and resetting as a client of Envoy would see it",
			"content_length", s.declaredLength)
		if rest := s.declaredLength - s.bytesSent; rest > 0 {
			n, _ := s.w.Write(data[:rest])
			s.bytesSent += int64(n)
			_ = http.NewResponseController(s.w).Flush()
		}
		return &streamReset{details: "response_body_longer_than_content_length"}
	}
	n, err := s.w.Write(data)
	s.bytesSent += int64(n)
	if err == nil {
		err = http.NewResponseController(s.w).Flush()
	}
	if err != nil {
		return errDownstreamGone
	}
	s.idle.reset()
	return nil
}

// decodeHeaders builds Envoy's request header map and applies the
// connection manager's request header handling
// (ConnectionManagerUtility::mutateRequestHeaders).
func (s *stream) decodeHeaders() error {
	r := s.r
	h := &headerMap{}
	path := r.RequestURI
	if strings.HasPrefix(path, "http://") || strings.HasPrefix(path, "https://") {
		if u, err := url.Parse(path); err == nil {
			path = u.RequestURI()
		}
	}
	h.add(":authority", r.Host)
	h.add(":path", path)
	h.add(":method", r.Method)
	h.add(":scheme", "http")
	h.fromHTTP(r.Header)
	s.req = h

	if !strings.HasPrefix(path, "/") {
		return &localReply{status: 400, body: "Bad Request", details: "path_normalization_failed"}
	}
	if s.hcm.normalizePath || s.hcm.mergeSlashes {
		p, q, hasQuery := strings.Cut(path, "?")
		if s.hcm.normalizePath {
			np, ok := normalizePath(p)
			if !ok {
				return &localReply{status: 400, body: "Bad Request", details: "path_normalization_failed"}
			}
			p = np
		}
		if s.hcm.mergeSlashes {
			p = mergeSlashes(p)
		}
		if hasQuery {
			p += "?" + q
		}
		h.set(":path", p)
	}

	// Connection-level headers are never forwarded.
	for _, k := range append(hopByHop, "te") {
		if k == "te" {
			if v, _ := h.get("te"); strings.EqualFold(strings.TrimSpace(v), "trailers") {
				continue
			}
		}
		h.del(k)
	}

	peer, _ := netip.ParseAddrPort(r.RemoteAddr)
	var local netip.Addr
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(la.String()); err == nil {
			local = ap.Addr()
		}
	}
	remote := peer
	if s.hcm.useRemoteAddress {
		if s.hcm.xffTrustedHops > 0 {
			if a, ok := xffAddress(h, int(s.hcm.xffTrustedHops)-1); ok {
				remote = netip.AddrPortFrom(a, 0)
			}
		}
		if !s.hcm.skipXFFAppend {
			// Envoy appends its own address for a loopback peer.
			appended := peer.Addr()
			if appended.IsLoopback() && local.IsValid() {
				appended = local
			}
			appendXFF(h, appended.Unmap().String())
		}
		h.set("x-forwarded-proto", "http")
	} else {
		if a, ok := xffAddress(h, int(s.hcm.xffTrustedHops)); ok {
			remote = netip.AddrPortFrom(a, 0)
		}
		if !h.has("x-forwarded-proto") {
			h.set("x-forwarded-proto", "http")
		}
	}
	s.remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())

	// No internal_address_config: since Envoy 1.33 no address is trusted,
	// so every request is external.
	edge := s.hcm.useRemoteAddress
	if edge {
		for _, k := range []string{"x-envoy-decorator-operation", "x-envoy-downstream-service-cluster", "x-envoy-downstream-service-node", "x-envoy-original-path"} {
			h.del(k)
		}
	}
	for _, k := range []string{
		"x-envoy-internal", "x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries",
		"x-envoy-upstream-alt-stat-name", "x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms",
		"x-envoy-upstream-rq-timeout-alt-response", "x-envoy-expected-rq-timeout-ms", "x-envoy-force-trace",
		"x-envoy-ip-tags", "x-envoy-original-url", "x-envoy-hedge-on-per-try-timeout",
		"x-envoy-retriable-status-codes", "x-envoy-retriable-header-names",
	} {
		h.del(k)
	}
	if s.table != nil {
		// internal_only_headers leave external requests before any filter.
		for _, k := range s.table.internalOnlyHeaders {
			h.del(k)
		}
	}
	if edge && s.remote.Addr().IsValid() {
		h.set("x-envoy-external-address", s.remote.Addr().String())
	}
	if s.hcm.generateRequestID && ((edge && !s.hcm.preserveExternalRequestID) || !h.has("x-request-id")) {
		h.set("x-request-id", uuid.NewString())
	}
	return nil
}

// sourceAddress is CEL's source.address: the trusted client address with
// its port (0 when it came from x-forwarded-for).
func (s *stream) sourceAddress() string { return s.remote.String() }

// xffAddress is Envoy's getLastAddressFromXFF: the address skip entries from
// the right of x-forwarded-for.
func xffAddress(h *headerMap, skip int) (netip.Addr, bool) {
	v, ok := h.joined("x-forwarded-for")
	if !ok {
		return netip.Addr{}, false
	}
	parts := strings.Split(v, ",")
	if skip >= len(parts) {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(strings.TrimSpace(parts[len(parts)-1-skip]))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func appendXFF(h *headerMap, addr string) {
	if v, ok := h.joined("x-forwarded-for"); ok && v != "" {
		h.set("x-forwarded-for", v+","+addr)
		return
	}
	h.set("x-forwarded-for", addr)
}

// normalizePath is RFC 3986 normalisation as Envoy's normalize_path does it:
// percent-encoded unreserved characters are decoded, other escapes are
// upper-cased, and dot segments are removed. A malformed escape fails.
func normalizePath(p string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return "", false
		}
		v := unhex(p[i+1])<<4 | unhex(p[i+2])
		if isUnreserved(v) {
			b.WriteByte(v)
		} else {
			b.WriteByte('%')
			b.WriteString(strings.ToUpper(p[i+1 : i+3]))
		}
		i += 2
	}
	return removeDotSegments(b.String()), true
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func isUnreserved(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strings.IndexByte("-._~", c) >= 0
}

// removeDotSegments is RFC 3986 §5.2.4.
func removeDotSegments(p string) string {
	segs := strings.Split(p, "/")
	var out []string
	for i, seg := range segs {
		switch seg {
		case ".":
			if i == len(segs)-1 {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if i == len(segs)-1 {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	res := strings.Join(out, "/")
	if !strings.HasPrefix(res, "/") {
		res = "/" + res
	}
	return res
}

func mergeSlashes(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return p
}

// currentRoute is the cached route, matched again after clear_route_cache.
func (s *stream) currentRoute() *route {
	if !s.routeCached {
		s.routeCached = true
		s.cachedRoute = nil
		if s.table != nil {
			s.cachedRoute = s.table.match(s.req)
		}
	}
	return s.cachedRoute
}

func (s *stream) clearRouteCache() {
	s.routeCached = false
	s.cachedRoute = nil
}

func (s *stream) logAccess() {
	s.dp.accessLog.write(s.hcm.accessLogs, s.logEntry())
}

// logEntry is what the stream's access log and local reply formats read.
func (s *stream) logEntry() *logEntry {
	e := &logEntry{
		start:            s.start,
		duration:         time.Since(s.start),
		reqHeaders:       s.req,
		respHeaders:      s.respHeaders,
		protocol:         s.protocol,
		responseCode:     s.code,
		flags:            sortedFlags(s.flags),
		details:          s.details,
		upstreamCluster:  s.upstreamCluster,
		upstreamHost:     s.upstreamHost,
		upstreamFailure:  s.upstreamFailure,
		bytesReceived:    s.bytesReceived.Load(),
		bytesSent:        s.bytesSent,
		attempts:         s.attempts,
		downstreamRemote: s.remote.String(),
	}
	if s.cachedRoute != nil {
		e.routeName = s.cachedRoute.name
	}
	return e
}

// idleTimer ends a stream that sees no activity for its timeout (the HCM's
// stream_idle_timeout, replaced by the route's idle_timeout once routed).
type idleTimer struct {
	mu   sync.Mutex
	d    time.Duration
	t    *time.Timer
	fire func()
	done bool
}

func newIdleTimer(d time.Duration, fire func()) *idleTimer {
	t := &idleTimer{d: d, fire: fire}
	t.resetLocked()
	return t
}

func (t *idleTimer) resetLocked() {
	if t.t != nil {
		t.t.Stop()
		t.t = nil
	}
	if t.d > 0 && !t.done {
		t.t = time.AfterFunc(t.d, t.fire)
	}
}

func (t *idleTimer) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resetLocked()
}

func (t *idleTimer) setTimeout(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.d = d
	t.resetLocked()
}

func (t *idleTimer) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	if t.t != nil {
		t.t.Stop()
	}
}

func (s *stream) setDynamicMetadata(ns string, v *structpb.Struct) {
	s.dynMetaMu.Lock()
	defer s.dynMetaMu.Unlock()
	if s.dynMeta == nil {
		s.dynMeta = map[string]map[string]*structpb.Value{}
	}
	fields := s.dynMeta[ns]
	if fields == nil {
		fields = map[string]*structpb.Value{}
		s.dynMeta[ns] = fields
	}
	for k, f := range v.GetFields() {
		fields[k] = f
	}
}

// dynamicMetadata returns the value at ns and path, and whether it is set.
func (s *stream) dynamicMetadata(ns string, path []string) (*structpb.Value, bool) {
	s.dynMetaMu.Lock()
	defer s.dynMetaMu.Unlock()
	fields, ok := s.dynMeta[ns]
	if !ok || len(path) == 0 {
		return nil, false
	}
	v, ok := fields[path[0]]
	for _, k := range path[1:] {
		if !ok || v.GetStructValue() == nil {
			return nil, false
		}
		v, ok = v.GetStructValue().GetFields()[k]
	}
	return v, ok
}
