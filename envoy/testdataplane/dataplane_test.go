package testdataplane

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tollgate-dev/tollgate/controlplane/ir"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
)

// twoModels is a gateway with models "a" and "b", each on its own upstream.
func twoModels(t *testing.T) (tg *testGateway, ua, ub *upstreamServer, routeA, routeB string) {
	ua = newUpstream(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) { _, _ = io.WriteString(w, "from-a") })
	ub = newUpstream(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) { _, _ = io.WriteString(w, "from-b") })
	tg = &testGateway{}
	pa := tg.provider(ir.KindOpenAICompatible, ua.URL)
	pb := tg.provider(ir.KindOpenAICompatible, ub.URL)
	routeA, _ = tg.model("a", deployment{provider: pa, weight: 1})
	routeB, _ = tg.model("b", deployment{provider: pb, weight: 1})
	return tg, ua, ub, routeA, routeB
}

func TestRoutesByHeaderAfterClearRouteCache(t *testing.T) {
	e := newEnv(t)
	tg, ua, ub, routeA, routeB := twoModels(t)
	e.proc.script(routeByModel(map[string]string{"a": routeA, "b": routeB}), nil)
	e.start(&tg.g)

	code, hdr, body := e.post("/v1/chat/completions", `{"model":"b"}`)
	if code != 200 || body != "from-b" {
		t.Fatalf("model b: %d %q", code, body)
	}
	if hdr.Get(xdstranslate.RouteHeader) != "" {
		t.Error("the routing header reached the client")
	}
	if n := len(ua.requests()); n != 0 {
		t.Errorf("upstream a got %d requests", n)
	}
	got := ub.requests()
	if len(got) != 1 {
		t.Fatalf("upstream b got %d requests", len(got))
	}
	if v := got[0].header.Get(xdstranslate.RouteHeader); v != "" {
		t.Errorf("the routing header reached the provider: %q", v)
	}
	if got[0].path != "/v1/chat/completions" || string(got[0].body) != `{"model":"b"}` {
		t.Errorf("provider got %s %q", got[0].path, got[0].body)
	}
	// The route's cluster was chosen per try: one upstream ext_proc stream,
	// with the deployment's id.
	if up := e.proc.streamsOf(roleUpstream); len(up) != 1 || up[0].deployment == "" {
		t.Errorf("upstream ext_proc streams: %+v", up)
	}
	if code, _, _ := e.post("/v1/chat/completions", `{"model":"unknown"}`); code != 404 {
		t.Errorf("no route selected: status %d, want the default route's 404", code)
	}
}

// Envoy re-matches the route only with clear_route_cache: a header
// mutation alone leaves the request on the route matched before it.
func TestHeaderWithoutClearRouteCacheDoesNotReroute(t *testing.T) {
	e := newEnv(t)
	tg, _, ub, _, routeB := twoModels(t)
	e.proc.script(func(_ *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		if req.GetRequestBody() != nil {
			return reply(req, &extprocsvc.CommonResponse{HeaderMutation: setHeaders(xdstranslate.RouteHeader, routeB)}), nil
		}
		return nil, nil
	}, nil)
	e.start(&tg.g)
	code, hdr, _ := e.post("/v1/chat/completions", `{"model":"b"}`)
	if code != 404 || hdr.Get("content-type") != "application/json" {
		t.Errorf("status %d content-type %q, want the default route's 404 JSON", code, hdr.Get("content-type"))
	}
	if n := len(ub.requests()); n != 0 {
		t.Errorf("upstream b got %d requests without clear_route_cache", n)
	}
}

func TestImmediateResponse(t *testing.T) {
	e := newEnv(t)
	tg, ua, _, _, _ := twoModels(t)
	e.proc.script(func(_ *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		if req.GetRequestHeaders() == nil {
			return nil, nil
		}
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocsvc.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
			Headers: setHeaders("content-type", "application/json", "x-envoy-test", "refused"),
			Body:    []byte(`{"error":{"code":"invalid_api_key"}}`),
			Details: "tollgate key unknown",
		}}}, nil
	}, nil)
	e.start(&tg.g)
	code, hdr, body := e.post("/v1/chat/completions", `{"model":"a"}`)
	if code != 401 || body != `{"error":{"code":"invalid_api_key"}}` || hdr.Get("content-type") != "application/json" {
		t.Fatalf("got %d %q content-type %q", code, body, hdr.Get("content-type"))
	}
	if hdr.Get("x-envoy-test") != "" {
		t.Error("an x-envoy-* header from an immediate response passed the mutation rules")
	}
	if len(ua.requests()) != 0 {
		t.Error("the upstream was called")
	}
	// A local reply is not sent to the processor (CVE-2025-30157 fix): the
	// stream saw the request headers only.
	down := e.proc.streamsOf(roleDownstream)
	if len(down) != 1 || len(down[0].msgs) != 1 {
		t.Fatalf("downstream streams %d, messages %d", len(down), len(down[0].msgs))
	}
	if got := e.lastAccess(1)["details"]; got != "tollgate_key_unknown" {
		t.Errorf("access log details = %v", got)
	}
}

func TestBufferedBodyMutationAndContentLength(t *testing.T) {
	for name, tc := range map[string]struct {
		fixLength bool
		wantCode  int
	}{
		// Envoy keeps content-length in BUFFERED mode with headers sent, so a
		// new body of another length must come with a matching header.
		"content-length set with the body": {fixLength: true, wantCode: 200},
		"content-length left stale":        {fixLength: false, wantCode: 500},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			tg, ua, _, routeA, _ := twoModels(t)
			newBody := `{"model":"a","store":false}`
			e.proc.script(func(_ *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
				if req.GetRequestBody() == nil {
					return nil, nil
				}
				hm := setHeaders(xdstranslate.RouteHeader, routeA)
				if tc.fixLength {
					hm = setHeaders(xdstranslate.RouteHeader, routeA, "content-length", "27")
				}
				return reply(req, &extprocsvc.CommonResponse{
					HeaderMutation: hm, ClearRouteCache: true,
					BodyMutation: &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(newBody)}},
				}), nil
			}, nil)
			e.start(&tg.g)
			code, _, _ := e.post("/v1/chat/completions", `{"model":"a"}`)
			if code != tc.wantCode {
				t.Fatalf("status %d, want %d", code, tc.wantCode)
			}
			got := ua.requests()
			if tc.wantCode != 200 {
				if len(got) != 0 {
					t.Error("the upstream was called after a content-length mismatch")
				}
				return
			}
			if len(got) != 1 || string(got[0].body) != newBody || got[0].contentLength != int64(len(newBody)) {
				t.Fatalf("upstream got %+v", got)
			}
		})
	}
}

// CONTINUE_AND_REPLACE in the upstream filter's headers reply replaces the
// body of that try and removes content-length: the provider gets it chunked.
func TestContinueAndReplaceRemovesContentLength(t *testing.T) {
	e := newEnv(t)
	tg, ua, _, routeA, _ := twoModels(t)
	translated := `{"messages":[],"model":"claude"}`
	e.proc.script(routeByModel(map[string]string{"a": routeA}), func(_ *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		if req.GetRequestHeaders() == nil {
			return nil, nil
		}
		return reply(req, &extprocsvc.CommonResponse{
			Status:         extprocsvc.CommonResponse_CONTINUE_AND_REPLACE,
			HeaderMutation: setHeaders(":path", "/v1/messages", "x-api-key", "sk-provider"),
			BodyMutation:   &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(translated)}},
		}), nil
	})
	e.start(&tg.g)
	if code, _, _ := e.post("/v1/chat/completions", `{"model":"a"}`); code != 200 {
		t.Fatalf("status %d", code)
	}
	got := ua.requests()
	if len(got) != 1 {
		t.Fatalf("upstream got %d requests", len(got))
	}
	r := got[0]
	if r.path != "/v1/messages" || string(r.body) != translated || r.header.Get("x-api-key") != "sk-provider" {
		t.Errorf("upstream got %s %q key %q", r.path, r.body, r.header.Get("x-api-key"))
	}
	if r.header.Get("content-length") != "" || r.contentLength != -1 || len(r.transferEncoding) == 0 {
		t.Errorf("content-length %q length %d transfer-encoding %v: want chunked without content-length", r.header.Get("content-length"), r.contentLength, r.transferEncoding)
	}
}

func TestStreamedSSEArrivesIncrementally(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	finished := make(chan struct{})
	ua := newUpstream(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		defer close(finished)
		w.Header().Set("content-type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: second\n\n")
	})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // runs before the upstream's Close, which waits for the handler
	tg := &testGateway{}
	p := tg.provider(ir.KindOpenAICompatible, ua.URL)
	routeA, _ := tg.model("a", deployment{provider: p, weight: 1})
	// The upstream filter streams the response body (mode_override in its
	// response headers reply) and rewrites each chunk.
	e.proc.script(routeByModel(map[string]string{"a": routeA}), func(_ *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		switch {
		case req.GetResponseHeaders() != nil:
			r := continueReply(req)
			r.ModeOverride = &extprocv3.ProcessingMode{ResponseBodyMode: extprocv3.ProcessingMode_STREAMED}
			return r, nil
		case req.GetResponseBody() != nil:
			out := bytes.ReplaceAll(req.GetResponseBody().GetBody(), []byte("data: "), []byte("data: translated-"))
			return reply(req, &extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: out}}}), nil
		}
		return nil, nil
	})
	e.start(&tg.g)

	req, _ := http.NewRequest(http.MethodPost, e.url("/v1/chat/completions"), strings.NewReader(`{"model":"a","stream":true}`))
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	rd := bufio.NewReader(resp.Body)
	first := make(chan string, 1)
	go func() {
		var ev strings.Builder
		for {
			line, err := rd.ReadString('\n')
			ev.WriteString(line)
			if err != nil || line == "\n" {
				first <- ev.String()
				return
			}
		}
	}()
	select {
	case ev := <-first:
		if ev != "data: translated-first\n\n" {
			t.Fatalf("first event %q", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first event did not arrive while the upstream was still streaming")
	}
	select {
	case <-finished:
		t.Fatal("upstream finished before the first event was read")
	default:
	}
	releaseOnce()
	rest, _ := io.ReadAll(rd)
	if string(rest) != "data: translated-second\n\n" {
		t.Errorf("rest %q", rest)
	}
	if resp.ContentLength != -1 {
		t.Errorf("content-length %d on a streamed response", resp.ContentLength)
	}
}

func TestMessageTimeoutIs504(t *testing.T) {
	e := newEnv(t)
	e.opts.MessageTimeout = 200 * time.Millisecond
	tg, ua, _, _, _ := twoModels(t)
	e.proc.script(func(ps *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		select {
		case <-time.After(2 * time.Second):
		case <-ps.ctx.Done():
		}
		return nil, nil
	}, nil)
	e.start(&tg.g)
	start := time.Now()
	code, _, _ := e.post("/v1/chat/completions", `{"model":"a"}`)
	if code != 504 {
		t.Fatalf("status %d, want 504", code)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("took %v; the message timeout is 200ms", d)
	}
	if len(ua.requests()) != 0 {
		t.Error("the upstream was called")
	}
	if got := e.lastAccess(1)["details"]; got != "ext_proc_error_per-message_timeout_exceeded" {
		t.Errorf("details = %v", got)
	}
}

func TestExtProcGRPCErrorFailsClosed(t *testing.T) {
	e := newEnv(t)
	tg, ua, _, _, _ := twoModels(t)
	e.proc.script(func(*procStream, *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		return nil, status.Error(codes.Internal, "boom")
	}, nil)
	e.start(&tg.g)
	if code, _, _ := e.post("/v1/chat/completions", `{"model":"a"}`); code != 500 {
		t.Errorf("status %d, want 500", code)
	}
	if len(ua.requests()) != 0 {
		t.Error("the upstream was called")
	}
	if got := e.lastAccess(1)["details"]; got != "ext_proc_error_gRPC_error_13{boom}" {
		t.Errorf("details = %v", got)
	}
}

// A processor that closes its stream with OK is out of the picture: the
// request continues unprocessed, even with the filter failing closed.
func TestExtProcClosingWithOKContinues(t *testing.T) {
	e := newEnv(t)
	tg, ua, _, _, _ := twoModels(t)
	e.proc.script(func(*procStream, *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		return nil, errCloseOK
	}, nil)
	e.start(&tg.g)
	// Unprocessed, nothing selects a model route: the default route answers.
	if code, _, _ := e.post("/v1/chat/completions", `{"model":"a"}`); code != 404 {
		t.Errorf("status %d, want the default route's 404", code)
	}
	if len(ua.requests()) != 0 {
		t.Error("the upstream was called")
	}
}

func TestFallback429ToNextPriority(t *testing.T) {
	e := newEnv(t)
	u0 := newUpstream(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Header().Set("retry-after", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":"rate limited"}`)
	})
	u1 := newUpstream(t, nil)
	tg := &testGateway{}
	p0 := tg.provider(ir.KindOpenAICompatible, u0.URL)
	p1 := tg.provider(ir.KindOpenAICompatible, u1.URL)
	route, deps := tg.model("smart", deployment{provider: p0, weight: 1, priority: 0}, deployment{provider: p1, weight: 1, priority: 10})
	// The downstream filter leaves a changed body; every try must carry it.
	changed := `{"model":"smart","store":false}`
	e.proc.script(func(ps *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		if req.GetRequestBody() == nil {
			return nil, nil
		}
		return reply(req, &extprocsvc.CommonResponse{
			HeaderMutation: setHeaders(xdstranslate.RouteHeader, route, "content-length", strconv.Itoa(len(changed))), ClearRouteCache: true,
			BodyMutation: &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(changed)}},
		}), nil
	}, nil)
	e.start(&tg.g)
	code, _, body := e.post("/v1/chat/completions", `{"model":"smart"}`)
	if code != 200 || body != `{"ok":true}` {
		t.Fatalf("got %d %q, want the second deployment's answer", code, body)
	}
	if len(u0.requests()) != 1 || len(u1.requests()) != 1 {
		t.Fatalf("requests: priority 0 got %d, priority 1 got %d", len(u0.requests()), len(u1.requests()))
	}
	for i, r := range [][]recorded{u0.requests(), u1.requests()} {
		if string(r[0].body) != changed {
			t.Errorf("try %d body %q: retries must replay the body as the downstream filter left it", i, r[0].body)
		}
	}
	up := e.proc.streamsOf(roleUpstream)
	if len(up) != 2 || up[0].deployment != deps[0].String() || up[1].deployment != deps[1].String() {
		t.Fatalf("upstream ext_proc streams saw deployments %v, want %v then %v", deployments(up), deps[0], deps[1])
	}
	// The upstream filter saw the 429 of the first try too.
	if got, _ := headerValue(lastResponseHeaders(up[0]), ":status"); got != "429" {
		t.Errorf("first try's upstream filter saw status %q", got)
	}
	line := e.lastAccess(1)
	if line["attempts"] != float64(2) || line["status"] != float64(200) {
		t.Errorf("access log attempts %v status %v", line["attempts"], line["status"])
	}
}

func deployments(ps []*procStream) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.deployment)
	}
	return out
}

func lastResponseHeaders(ps *procStream) *corev3.HeaderMap {
	for i := len(ps.msgs) - 1; i >= 0; i-- {
		if h := ps.msgs[i].GetResponseHeaders(); h != nil {
			return h.GetHeaders()
		}
	}
	return nil
}

func TestWeightsSplitByRatio(t *testing.T) {
	e := newEnv(t)
	u0 := newUpstream(t, nil)
	u1 := newUpstream(t, nil)
	tg := &testGateway{}
	p0 := tg.provider(ir.KindOpenAICompatible, u0.URL)
	p1 := tg.provider(ir.KindOpenAICompatible, u1.URL)
	route, _ := tg.model("m", deployment{provider: p0, weight: 3}, deployment{provider: p1, weight: 1})
	e.proc.script(routeByModel(map[string]string{"m": route}), nil)
	e.start(&tg.g)
	const n = 400
	for i := 0; i < n; i++ {
		if code, _, _ := e.post("/v1/chat/completions", `{"model":"m"}`); code != 200 {
			t.Fatalf("request %d: status %d", i, code)
		}
	}
	a, b := len(u0.requests()), len(u1.requests())
	// 3:1 expects 300/100; ±45 is more than five standard deviations.
	if a+b != n || a < 255 || a > 345 {
		t.Errorf("split %d:%d, want about 300:100", a, b)
	}
}

func TestUnmodelledFieldIsNACKedAndNotServed(t *testing.T) {
	e := newEnv(t)
	tg, ua, ub, routeA, routeB := twoModels(t)
	e.proc.script(routeByModel(map[string]string{"a": routeA, "b": routeB}), nil)
	res := e.translate(&tg.g)
	// Model b's cluster asks for something the harness does not model.
	for _, c := range res.Clusters {
		if c.GetName() == routeB {
			c.CleanupInterval = durationpb.New(2 * time.Second)
		}
	}
	e.startWith(res)

	if code, _, body := e.post("/v1/chat/completions", `{"model":"a"}`); code != 200 || body != "from-a" {
		t.Fatalf("model a: %d %q", code, body)
	}
	code, _, _ := e.post("/v1/chat/completions", `{"model":"b"}`)
	if code != 503 || len(ub.requests()) != 0 {
		t.Fatalf("model b: status %d, upstream requests %d; the refused cluster must not serve", code, len(ub.requests()))
	}
	if got := e.lastAccess(2)["flags"]; got != "NC" {
		t.Errorf("flags = %v, want NC", got)
	}
	var nack bool
	for _, r := range e.xds.requests() {
		if r.GetTypeUrl() == typeCluster && strings.Contains(r.GetErrorDetail().GetMessage(), "cleanup_interval") {
			nack = r.GetVersionInfo() != "1"
		}
	}
	if !nack {
		t.Error("no CDS NACK naming cleanup_interval (with the previous version) reached the control plane")
	}
	rej := e.dp.Rejections()
	if len(rej) != 1 || rej[0].Name != routeB || !strings.Contains(rej[0].Err.Error(), "cleanup_interval") {
		t.Errorf("rejections = %v", rej)
	}
	if !strings.Contains(e.logs.String(), "level=ERROR") {
		t.Error("the refusal was not logged as an error")
	}
	_ = ua

	// A fixed configuration is ACKed and served.
	v := e.xds.publish(t, e.translate(&tg.g))
	deadline := time.Now().Add(5 * time.Second)
	for {
		acked := false
		for _, r := range e.xds.requests() {
			if r.GetTypeUrl() == typeCluster && r.GetVersionInfo() == v && r.GetErrorDetail() == nil {
				acked = true
			}
		}
		if acked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fixed configuration was not ACKed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _, body := e.post("/v1/chat/completions", `{"model":"b"}`); code != 200 || body != "from-b" {
		t.Errorf("model b after the fix: %d %q", code, body)
	}
}

func TestInternalHeadersStrippedFromExternalRequests(t *testing.T) {
	e := newEnv(t)
	tg, _, ub, _, routeB := twoModels(t)
	e.start(&tg.g)
	// A client that names a route itself must not get it.
	code, _, _ := e.post("/v1/chat/completions", `{"model":"b"}`,
		xdstranslate.RouteHeader, routeB, "x-request-id", "client-chosen", "x-envoy-retry-on", "5xx", "x-forwarded-for", "203.0.113.9")
	if code != 404 || len(ub.requests()) != 0 {
		t.Fatalf("status %d, upstream requests %d: a client chose its own route", code, len(ub.requests()))
	}
	down := e.proc.streamsOf(roleDownstream)
	if len(down) != 1 {
		t.Fatalf("%d downstream streams", len(down))
	}
	h := down[0].msgs[0].GetRequestHeaders().GetHeaders()
	if v, ok := headerValue(h, xdstranslate.RouteHeader); ok {
		t.Errorf("ext_proc saw the internal header %q", v)
	}
	if v, ok := headerValue(h, "x-envoy-retry-on"); ok {
		t.Errorf("ext_proc saw x-envoy-retry-on %q", v)
	}
	if id, _ := headerValue(h, "x-request-id"); id == "" || id == "client-chosen" {
		t.Errorf("x-request-id %q: an external id must be replaced", id)
	}
	if xff, _ := headerValue(h, "x-forwarded-for"); xff != "203.0.113.9,127.0.0.1" {
		t.Errorf("x-forwarded-for %q", xff)
	}
	if ext, _ := headerValue(h, "x-envoy-external-address"); ext != "127.0.0.1" {
		t.Errorf("x-envoy-external-address %q (no trusted hops: the peer is the client)", ext)
	}
	if !strings.HasPrefix(down[0].source, "127.0.0.1:") {
		t.Errorf("source.address attribute %q", down[0].source)
	}
}

func TestAccessLogJSONLine(t *testing.T) {
	e := newEnv(t)
	tg, ua, _, routeA, _ := twoModels(t)
	e.proc.script(routeByModel(map[string]string{"a": routeA}), nil)
	e.start(&tg.g)
	if code, _, _ := e.post("/v1/chat/completions?x=1", `{"model":"a"}`); code != 200 {
		t.Fatalf("status %d", code)
	}
	line := e.lastAccess(1)
	reqID, _ := headerValue(e.proc.streamsOf(roleDownstream)[0].msgs[0].GetRequestHeaders().GetHeaders(), "x-request-id")
	want := map[string]any{
		"status": float64(200), "method": "POST", "path": "/v1/chat/completions?x=1", "protocol": "HTTP/1.1",
		"route": routeA, "upstream_cluster": routeA, "attempts": float64(1), "flags": "-", "details": "via_upstream",
		"bytes_received": float64(len(`{"model":"a"}`)), "bytes_sent": float64(len("from-a")), "request_id": reqID,
		"upstream_host": strings.TrimPrefix(ua.URL, "http://"), "upstream_failure": nil,
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %#v, want %#v", k, line[k], v)
		}
	}
	for _, k := range []string{"time", "duration_ms", "upstream_duration"} {
		if line[k] == nil {
			t.Errorf("%s missing from %v", k, line)
		}
	}
}

func TestUpstreamRouteTimeoutIs504(t *testing.T) {
	e := newEnv(t)
	e.opts.RouteTimeout = 300 * time.Millisecond
	slow := newUpstream(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	})
	tg := &testGateway{}
	p := tg.provider(ir.KindOpenAICompatible, slow.URL)
	route, _ := tg.model("a", deployment{provider: p, weight: 1})
	e.proc.script(routeByModel(map[string]string{"a": route}), nil)
	e.start(&tg.g)
	code, hdr, body := e.post("/v1/chat/completions", `{"model":"a"}`)
	if code != 504 {
		t.Fatalf("got %d %q", code, body)
	}
	// The control plane's local_reply_config gives the router's reply
	// OpenAI's error shape, with Envoy's own text inside.
	wantJSONError(t, hdr, body, `{"error":{"code":"upstream_unavailable","message":"The gateway could not get a response from the provider: upstream request timeout","type":"server_error"}}`)
	if line := e.lastAccess(1); line["flags"] != "UT" || line["details"] != "upstream_response_timeout" {
		t.Errorf("flags %v details %v", line["flags"], line["details"])
	}
}

// The client's API that ext_proc writes in the stream's dynamic metadata
// decides the shape of the router's reply, whatever the request's path.
func TestClientAPIMetadataShapesTheUpstreamFailure(t *testing.T) {
	e := newEnv(t)
	e.opts.RouteTimeout = 300 * time.Millisecond
	slow := newUpstream(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	})
	tg := &testGateway{}
	p := tg.provider(ir.KindOpenAICompatible, slow.URL)
	route, _ := tg.model("a", deployment{provider: p, weight: 1})
	routing := routeByModel(map[string]string{"a": route})
	e.proc.script(func(ps *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		if req.GetRequestHeaders() == nil {
			return routing(ps, req)
		}
		resp := continueReply(req)
		resp.DynamicMetadata = &structpb.Struct{Fields: map[string]*structpb.Value{
			xdstranslate.MetadataNamespace: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
				xdstranslate.ClientAPIKey: structpb.NewStringValue(xdstranslate.ClientAPIAnthropic),
			}}),
		}}
		return resp, nil
	}, nil)
	e.start(&tg.g)
	code, hdr, body := e.post("/v1/chat/completions", `{"model":"a"}`)
	if code != 504 {
		t.Fatalf("got %d %q", code, body)
	}
	wantJSONError(t, hdr, body, `{"type":"error","error":{"type":"api_error","message":"The gateway could not get a response from the provider: upstream request timeout"}}`)
}

func TestOversizedBufferedBodyIs413(t *testing.T) {
	e := newEnv(t)
	tg, ua, _, _, _ := twoModels(t)
	e.start(&tg.g)
	big := `{"model":"a","x":"` + strings.Repeat("x", int(e.opts.MaxRequestBytes)) + `"}`
	msg := fmt.Sprintf("The request body is larger than this gateway accepts (%d bytes). Send a smaller request.", e.opts.MaxRequestBytes)
	for path, want := range map[string]string{
		"/v1/chat/completions":    `{"error":{"code":"request_too_large","message":"` + msg + `","type":"invalid_request_error"}}`,
		"/v1/messages?beta=true":  `{"type":"error","error":{"type":"request_too_large","message":"` + msg + `"}}`,
		"/v1/messages/count_toke": `{"type":"error","error":{"type":"request_too_large","message":"` + msg + `"}}`,
	} {
		code, hdr, body := e.post(path, big)
		if code != 413 {
			t.Errorf("%s: status %d, want 413", path, code)
			continue
		}
		wantJSONError(t, hdr, body, want)
		if line := e.lastAccess(1); line["details"] != "request_payload_too_large" {
			t.Errorf("%s: details %v", path, line["details"])
		}
	}
	if len(ua.requests()) != 0 {
		t.Error("the upstream was called")
	}
}

// Replies ext_proc makes are local replies too, but no mapper matches them:
// a 503 from ext_proc carries no response flag, so its body, already in the
// client's shape, is left alone.
func TestLocalReplyMappersLeaveExtProcRepliesAlone(t *testing.T) {
	e := newEnv(t)
	tg, _, _, _, _ := twoModels(t)
	const refusal = `{"error":{"message":"no","type":"server_error","param":null,"code":"x"}}`
	e.proc.script(func(_ *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		if req.GetRequestHeaders() == nil {
			return nil, nil
		}
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocsvc.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
			Headers: setHeaders("content-type", "application/json"),
			Body:    []byte(refusal),
		}}}, nil
	}, nil)
	e.start(&tg.g)
	for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
		code, _, body := e.post(path, `{"model":"a"}`)
		if code != 503 || body != refusal {
			t.Errorf("%s: ImmediateResponse 503 became %d %q", path, code, body)
		}
	}
}

// wantJSONError checks a mapped local reply: JSON, with a content length
// that matches, and equal to want as JSON.
func wantJSONError(t *testing.T, hdr http.Header, body, want string) {
	t.Helper()
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content-type %q, want application/json", ct)
	}
	if cl := hdr.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
		t.Errorf("content-length %s for a body of %d bytes", cl, len(body))
	}
	var got, w any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, w) {
		t.Errorf("body %s\nwant %s", body, want)
	}
}
