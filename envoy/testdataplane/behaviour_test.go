package testdataplane

import (
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate-dev/tollgate/controlplane/ir"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
)

// twoPriorities is a model served by first (priority 0) then second.
func twoPriorities(t *testing.T, first, second *upstreamServer) (tg *testGateway, route string, deps []string) {
	tg = &testGateway{}
	p0 := tg.provider(ir.KindOpenAICompatible, first.URL)
	p1 := tg.provider(ir.KindOpenAICompatible, second.URL)
	route, ids := tg.model("m", deployment{provider: p0, weight: 1, priority: 0}, deployment{provider: p1, weight: 1, priority: 1})
	for _, id := range ids {
		deps = append(deps, id.String())
	}
	return tg, route, deps
}

func statusUpstream(t *testing.T, code int) *upstreamServer {
	return newUpstream(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.WriteHeader(code)
		_, _ = io.WriteString(w, strconv.Itoa(code))
	})
}

// A deployment that keeps failing is ejected, and new requests go straight
// to the next priority instead of trying it first.
func TestOutlierEjectionFallsToNextPriority(t *testing.T) {
	e := newEnv(t)
	bad, good := statusUpstream(t, 503), newUpstream(t, nil)
	tg, route, _ := twoPriorities(t, bad, good)
	e.proc.script(routeByModel(map[string]string{"m": route}), nil)
	e.start(&tg.g)
	for i := 1; i <= 7; i++ {
		if code, _, _ := e.post("/v1/chat/completions", `{"model":"m"}`); code != 200 {
			t.Fatalf("request %d: status %d", i, code)
		}
	}
	// consecutive_5xx is 5: after five failures the host is ejected.
	if n := len(bad.requests()); n != 5 {
		t.Errorf("the failing deployment got %d requests, want 5 then ejection", n)
	}
	if a := e.lastAccess(7)["attempts"]; a != float64(1) {
		t.Errorf("attempts after ejection = %v, want 1", a)
	}
	if a := e.lastAccess(1)["attempts"]; a != float64(2) {
		t.Errorf("attempts before ejection = %v, want 2", a)
	}
}

func TestConnectFailureFallsBack(t *testing.T) {
	e := newEnv(t)
	closed := newUpstream(t, nil)
	closed.Close() // nothing listens there any more
	good := newUpstream(t, nil)
	tg, route, _ := twoPriorities(t, closed, good)
	e.proc.script(routeByModel(map[string]string{"m": route}), nil)
	e.start(&tg.g)
	if code, _, _ := e.post("/v1/chat/completions", `{"model":"m"}`); code != 200 {
		t.Fatalf("status %d", code)
	}
	if a := e.lastAccess(1)["attempts"]; a != float64(2) {
		t.Errorf("attempts %v", a)
	}
}

// Envoy cannot send a local reply from an upstream ext_proc filter: an
// ImmediateResponse there leaves the try stuck until the per-try idle
// timeout, and the retry goes to the next priority.
func TestUpstreamImmediateResponseStallsTheTry(t *testing.T) {
	e := newEnv(t)
	e.opts.PerTryIdleTimeout = 300 * time.Millisecond
	first, second := newUpstream(t, nil), newUpstream(t, nil)
	tg, route, deps := twoPriorities(t, first, second)
	e.proc.script(routeByModel(map[string]string{"m": route}), func(ps *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		if ps.deployment == deps[0] && req.GetRequestHeaders() != nil {
			return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocsvc.ImmediateResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Body: []byte("denied"),
			}}}, nil
		}
		return nil, nil
	})
	e.start(&tg.g)
	start := time.Now()
	code, _, body := e.post("/v1/chat/completions", `{"model":"m"}`)
	if code != 200 || body != `{"ok":true}` {
		t.Fatalf("got %d %q; the ImmediateResponse of an upstream filter must not reach the client", code, body)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("answered after %v, before the per-try idle timeout", d)
	}
	if len(first.requests()) != 0 || len(second.requests()) != 1 {
		t.Errorf("requests: first %d, second %d", len(first.requests()), len(second.requests()))
	}
}

func TestCircuitBreakerOverflowIs503(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	started := make(chan struct{}, 2)
	slow := newUpstream(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		started <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "done")
	})
	t.Cleanup(releaseOnce)
	tg := &testGateway{}
	p := tg.provider(ir.KindOpenAICompatible, slow.URL)
	route, _ := tg.model("m", deployment{provider: p, weight: 1})
	e.proc.script(routeByModel(map[string]string{"m": route}), nil)
	res := e.translate(&tg.g)
	for _, c := range res.Clusters {
		c.CircuitBreakers.Thresholds[0].MaxRequests = wrapperspb.UInt32(1)
	}
	e.startWith(res)

	first := make(chan int, 1)
	go func() {
		code, _, _ := e.post("/v1/chat/completions", `{"model":"m"}`)
		first <- code
	}()
	<-started
	code, _, body := e.post("/v1/chat/completions", `{"model":"m"}`)
	if code != 503 {
		t.Errorf("second concurrent request: %d %q, want 503", code, body)
	}
	releaseOnce()
	if c := <-first; c != 200 {
		t.Errorf("first request: %d", c)
	}
	e.lastAccess(2)
	var flags []any
	for _, l := range e.accessLines() {
		flags = append(flags, l["flags"])
	}
	if !slices.Contains(flags, any("UO")) || !slices.Contains(flags, any("-")) {
		t.Errorf("access log flags %v, want UO for the overflow and - for the other", flags)
	}
}

// mode_override is honoured only with allow_mode_override.
func TestModeOverrideNeedsAllowModeOverride(t *testing.T) {
	for name, allow := range map[string]bool{"allowed": true, "not allowed": false} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			tg, ua, _, routeA, _ := twoModels(t)
			// The processor selects the route at once and asks not to see
			// the body.
			e.proc.script(func(_ *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
				if req.GetRequestHeaders() == nil {
					return nil, nil
				}
				r := reply(req, &extprocsvc.CommonResponse{HeaderMutation: setHeaders(xdstranslate.RouteHeader, routeA), ClearRouteCache: true})
				r.ModeOverride = &extprocv3.ProcessingMode{RequestBodyMode: extprocv3.ProcessingMode_NONE}
				return r, nil
			}, nil)
			res := e.translate(&tg.g)
			setDownstreamExtProc(t, res.Listeners[0], func(c *extprocv3.ExternalProcessor) { c.AllowModeOverride = allow })
			e.startWith(res)
			if code, _, _ := e.post("/v1/chat/completions", `{"model":"a"}`); code != 200 || len(ua.requests()) != 1 {
				t.Fatalf("status %d", code)
			}
			sawBody := false
			for _, m := range e.proc.streamsOf(roleDownstream)[0].msgs {
				sawBody = sawBody || m.GetRequestBody() != nil
			}
			if sawBody == allow {
				t.Errorf("body sent to the processor: %v (allow_mode_override %v)", sawBody, allow)
			}
		})
	}
}

// setDownstreamExtProc edits the listener's ext_proc filter configuration.
func setDownstreamExtProc(t *testing.T, l *listenerv3.Listener, edit func(*extprocv3.ExternalProcessor)) {
	t.Helper()
	f := l.FilterChains[0].Filters[0]
	hcm := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	for _, hf := range hcm.HttpFilters {
		if hf.GetTypedConfig().GetTypeUrl() != typeExtProc {
			continue
		}
		c := &extprocv3.ExternalProcessor{}
		if err := hf.GetTypedConfig().UnmarshalTo(c); err != nil {
			t.Fatal(err)
		}
		edit(c)
		a, err := anypb.New(c)
		if err != nil {
			t.Fatal(err)
		}
		hf.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}
	}
	a, err := anypb.New(hcm)
	if err != nil {
		t.Fatal(err)
	}
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
}

// Content-length is decided when the headers are sent, before any
// mode_override (envoyproxy/ai-gateway#2391): a processor that switches the
// response to STREAMED and changes its length must remove content-length
// itself, in the same reply.
func TestContentLengthKeptAfterOverrideToStreamed(t *testing.T) {
	for name, remove := range map[string]bool{"removed by the processor": true, "left": false} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			up := newUpstream(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
				w.Header().Set("content-length", "5")
				_, _ = io.WriteString(w, "hello")
			})
			tg := &testGateway{}
			p := tg.provider(ir.KindOpenAICompatible, up.URL)
			route, _ := tg.model("m", deployment{provider: p, weight: 1})
			e.proc.script(routeByModel(map[string]string{"m": route}), func(_ *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
				switch {
				case req.GetResponseHeaders() != nil:
					common := &extprocsvc.CommonResponse{}
					if remove {
						common.HeaderMutation = &extprocsvc.HeaderMutation{RemoveHeaders: []string{"content-length"}}
					}
					r := reply(req, common)
					r.ModeOverride = &extprocv3.ProcessingMode{ResponseBodyMode: extprocv3.ProcessingMode_STREAMED}
					return r, nil
				case req.GetResponseBody() != nil:
					return reply(req, &extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{
						Mutation: &extprocsvc.BodyMutation_Body{Body: []byte("hello, translated")}}}), nil
				}
				return nil, nil
			})
			e.start(&tg.g)
			resp, err := http.Post(e.url("/v1/chat/completions"), "application/json", stringsReader(`{"model":"m"}`))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			body, _ := io.ReadAll(resp.Body)
			if remove {
				if resp.ContentLength != -1 || string(body) != "hello, translated" {
					t.Errorf("content-length %d body %q", resp.ContentLength, body)
				}
				return
			}
			// The upstream's length stays, as in Envoy, and the client reads
			// that many bytes of the longer body.
			if resp.Header.Get("content-length") != "5" || string(body) != "hello" {
				t.Errorf("content-length %q body %q", resp.Header.Get("content-length"), body)
			}
		})
	}
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

// The route's idle_timeout (the HCM's stream_idle_timeout before routing)
// ends a stream that sees no activity: 408 before the response.
func TestIdleTimeoutBeforeResponseIs408(t *testing.T) {
	e := newEnv(t)
	e.opts.StreamIdleTimeout = 300 * time.Millisecond
	slow := newUpstream(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	})
	tg := &testGateway{}
	p := tg.provider(ir.KindOpenAICompatible, slow.URL)
	route, _ := tg.model("m", deployment{provider: p, weight: 1})
	e.proc.script(routeByModel(map[string]string{"m": route}), nil)
	e.start(&tg.g)
	code, _, body := e.post("/v1/chat/completions", `{"model":"m"}`)
	if code != 408 || body != "stream timeout" {
		t.Fatalf("got %d %q, want 408 stream timeout", code, body)
	}
	if line := e.lastAccess(1); line["flags"] != "SI" || line["details"] != "stream_idle_timeout" {
		t.Errorf("flags %v details %v", line["flags"], line["details"])
	}
}

// An ImmediateResponse after the response headers went to the client can
// only reset the stream.
func TestImmediateResponseAfterResponseStartedResets(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Header().Set("content-type", "text/event-stream")
		_, _ = io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		time.Sleep(50 * time.Millisecond)
		_, _ = io.WriteString(w, "data: 2\n\n")
	})
	tg := &testGateway{}
	p := tg.provider(ir.KindOpenAICompatible, up.URL)
	route, _ := tg.model("m", deployment{provider: p, weight: 1})
	e.proc.script(func(ps *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		switch {
		case req.GetRequestBody() != nil:
			return routeByModel(map[string]string{"m": route})(ps, req)
		case req.GetResponseHeaders() != nil:
			r := continueReply(req)
			r.ModeOverride = &extprocv3.ProcessingMode{ResponseBodyMode: extprocv3.ProcessingMode_STREAMED}
			return r, nil
		case req.GetResponseBody() != nil && strings.Contains(string(req.GetResponseBody().GetBody()), "2"):
			return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocsvc.ImmediateResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Body: []byte("too late"),
			}}}, nil
		}
		return nil, nil
	}, nil)
	e.start(&tg.g)
	resp, err := http.Post(e.url("/v1/chat/completions"), "application/json", stringsReader(`{"model":"m"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || err == nil || string(body) != "data: 1\n\n" {
		t.Errorf("status %d, body %q, read error %v: want the first event, then a reset", resp.StatusCode, body, err)
	}
}

// What one request's processor changes about the processing mode
// (CONTINUE_AND_REPLACE ends body processing) must not leak into the next
// request.
func TestModeChangesStayWithinOneRequest(t *testing.T) {
	e := newEnv(t)
	tg, ua, _, routeA, _ := twoModels(t)
	route := routeByModel(map[string]string{"a": routeA})
	e.proc.script(func(ps *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		if h := req.GetRequestHeaders(); h != nil {
			if v, _ := headerValue(h.GetHeaders(), "x-test-replace"); v != "" {
				return reply(req, &extprocsvc.CommonResponse{
					Status:          extprocsvc.CommonResponse_CONTINUE_AND_REPLACE,
					HeaderMutation:  setHeaders(xdstranslate.RouteHeader, routeA),
					ClearRouteCache: true,
					BodyMutation:    &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte("replaced")}},
				}), nil
			}
		}
		return route(ps, req)
	}, nil)
	e.start(&tg.g)
	if code, _, _ := e.post("/v1/chat/completions", `{"model":"a"}`, "x-test-replace", "1"); code != 200 {
		t.Fatalf("replacing request: %d", code)
	}
	if code, _, _ := e.post("/v1/chat/completions", `{"model":"a"}`); code != 200 {
		t.Fatalf("next request: %d; its body must still go to the processor", code)
	}
	got := ua.requests()
	if len(got) != 2 || string(got[0].body) != "replaced" || string(got[1].body) != `{"model":"a"}` {
		t.Errorf("upstream bodies %q, %q", got[0].body, got[1].body)
	}
}

// failure_mode_allow lets a request continue unprocessed when the
// processor times out.
func TestFailureModeAllowContinuesUnprocessed(t *testing.T) {
	e := newEnv(t)
	e.opts.MessageTimeout = 100 * time.Millisecond
	tg, _, _, _, _ := twoModels(t)
	e.proc.script(func(ps *procStream, _ *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		<-ps.ctx.Done()
		return nil, nil
	}, nil)
	res := e.translate(&tg.g)
	setDownstreamExtProc(t, res.Listeners[0], func(c *extprocv3.ExternalProcessor) { c.FailureModeAllow = true })
	e.startWith(res)
	// Unprocessed, no model route is selected: the default route answers.
	if code, _, _ := e.post("/v1/chat/completions", `{"model":"a"}`); code != 404 {
		t.Errorf("status %d, want the default route's 404 (not 504)", code)
	}
}

// BUFFERED_PARTIAL sends the body up to the buffer limit while the headers
// are held (so the reply can still route), then lets the rest through; the
// content-length goes at header time.
func TestBufferedPartialBody(t *testing.T) {
	e := newEnv(t)
	tg, ua, _, routeA, _ := twoModels(t)
	var firstLen int
	var firstEOS bool
	e.proc.script(func(_ *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		b := req.GetRequestBody()
		if b == nil {
			return nil, nil
		}
		firstLen, firstEOS = len(b.GetBody()), b.GetEndOfStream()
		return reply(req, &extprocsvc.CommonResponse{HeaderMutation: setHeaders(xdstranslate.RouteHeader, routeA), ClearRouteCache: true}), nil
	}, nil)
	res := e.translate(&tg.g)
	setDownstreamExtProc(t, res.Listeners[0], func(c *extprocv3.ExternalProcessor) {
		c.ProcessingMode.RequestBodyMode = extprocv3.ProcessingMode_BUFFERED_PARTIAL
	})
	e.startWith(res)
	limit := int(e.opts.MaxRequestBytes)
	big := strings.Repeat("x", limit+limit/2)
	req, _ := http.NewRequest(http.MethodPost, e.url("/v1/chat/completions"), stringsReader(big))
	req.ContentLength = int64(len(big))
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if firstLen < limit || firstLen >= len(big) || firstEOS {
		t.Errorf("partial message: %d bytes, end_of_stream %v; want at least the %d-byte limit and more to come", firstLen, firstEOS, limit)
	}
	got := ua.requests()
	if len(got) != 1 || string(got[0].body) != big || got[0].contentLength != -1 {
		t.Errorf("upstream got %d bytes, content-length %d; want the whole body, chunked", len(got[0].body), got[0].contentLength)
	}
}

// Envoy closes an ext_proc stream after the last reply it expects (1.37+):
// the downstream filter of Tollgate's configuration sends no response body,
// so its stream ends with the response headers reply, while the response
// body is still streaming.
func TestExtProcStreamClosesAfterTheLastExpectedReply(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("content-type", "text/event-stream")
		_, _ = io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(releaseOnce)
	tg := &testGateway{}
	p := tg.provider(ir.KindOpenAICompatible, up.URL)
	route, _ := tg.model("m", deployment{provider: p, weight: 1})
	e.proc.script(routeByModel(map[string]string{"m": route}), nil)
	e.start(&tg.g)
	resp, err := http.Post(e.url("/v1/chat/completions"), "application/json", stringsReader(`{"model":"m"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	buf := make([]byte, len("data: 1\n\n"))
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	ended := func(role procRole) bool {
		e.proc.mu.Lock()
		defer e.proc.mu.Unlock()
		for _, s := range e.proc.streams {
			if _, done := e.proc.ended[s.id]; done && s.role == role {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(2 * time.Second)
	for !ended(roleDownstream) {
		if time.Now().After(deadline) {
			t.Fatal("the downstream ext_proc stream is still open while the response body streams")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The upstream filter processes response headers too but no body: its
	// stream has ended as well.
	if !ended(roleUpstream) {
		t.Error("the upstream ext_proc stream is still open")
	}
	releaseOnce()
}

// After the control plane restarts, the data plane resubscribes to
// everything at once and keeps following its changes, including a change
// to the routes alone (the cluster version it sends is then current, so no
// CDS response comes to wait for).
func TestFollowsTheControlPlaneAcrossReconnects(t *testing.T) {
	e := newEnv(t)
	tg, _, _, routeA, _ := twoModels(t)
	e.proc.script(routeByModel(map[string]string{"a": routeA}), nil)
	e.start(&tg.g)
	if code, hdr, _ := e.post("/v1/chat/completions", `{"model":"nope"}`); code != 404 || hdr.Get("x-after-restart") != "" {
		t.Fatalf("status %d", code)
	}
	e.xds.restart(t)
	res := e.translate(&tg.g)
	for _, vh := range res.Routes[0].VirtualHosts {
		for _, r := range vh.Routes {
			if r.GetDirectResponse() != nil {
				r.ResponseHeadersToAdd = append(r.ResponseHeadersToAdd, &corev3.HeaderValueOption{
					Header: &corev3.HeaderValue{Key: "x-after-restart", Value: "1"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
			}
		}
	}
	e.xds.publish(t, res)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, hdr, _ := e.post("/v1/chat/completions", `{"model":"nope"}`); hdr.Get("x-after-restart") == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the route change published after the restart never reached the data plane")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
