package testdataplane

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/controlplane/ir"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
	"github.com/tollgate-dev/tollgate/envoy"
	"github.com/tollgate-dev/tollgate/test/testport"
)

const testNodeID = "envoy-test-0"

// xdsServer is a go-control-plane ADS server on loopback that records what
// the data plane sends it (ACKs and NACKs).
type xdsServer struct {
	cache cache.SnapshotCache
	addr  *net.TCPAddr
	opts  []grpc.ServerOption
	stop  func()
	mu    sync.Mutex
	reqs  []*discoverygrpc.DiscoveryRequest
}

func startXDS(t *testing.T) *xdsServer { return startXDSWith(t) }

func startXDSWith(t *testing.T, opts ...grpc.ServerOption) *xdsServer {
	t.Helper()
	x := &xdsServer{cache: cache.NewSnapshotCache(true, cache.IDHash{}, nil), opts: opts}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	x.addr = ln.Addr().(*net.TCPAddr)
	x.serve(t, ln)
	return x
}

// serve runs a fresh ADS server over the cache on ln.
func (x *xdsServer) serve(t *testing.T, ln net.Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	srv := serverv3.NewServer(ctx, x.cache, serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discoverygrpc.DiscoveryRequest) error {
			x.mu.Lock()
			x.reqs = append(x.reqs, proto.Clone(r).(*discoverygrpc.DiscoveryRequest))
			x.mu.Unlock()
			return nil
		},
	})
	g := grpc.NewServer(x.opts...)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, srv)
	go func() { _ = g.Serve(ln) }()
	x.mu.Lock()
	x.stop = func() { g.Stop(); cancel() }
	x.mu.Unlock()
	t.Cleanup(func() { g.Stop(); cancel() })
}

// restart stops the server (ending every stream) and serves again on the
// same address.
func (x *xdsServer) restart(t *testing.T) {
	t.Helper()
	x.mu.Lock()
	stop := x.stop
	x.mu.Unlock()
	stop()
	ln, err := net.Listen("tcp", x.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	x.serve(t, ln)
}

// publish serves a translation. Like the control plane's publisher, every
// type gets its own version, a hash of its resources, so a type that did
// not change keeps its version. It returns the CDS version.
func (x *xdsServer) publish(t *testing.T, e *xdstranslate.Envoy) string {
	t.Helper()
	byType := map[resource.Type][]types.Resource{resource.ListenerType: {}, resource.RouteType: {}, resource.ClusterType: {}}
	for _, l := range e.Listeners {
		byType[resource.ListenerType] = append(byType[resource.ListenerType], l)
	}
	for _, r := range e.Routes {
		byType[resource.RouteType] = append(byType[resource.RouteType], r)
	}
	for _, c := range e.Clusters {
		byType[resource.ClusterType] = append(byType[resource.ClusterType], c)
	}
	snap := &cache.Snapshot{}
	for typ, rs := range byType {
		h := sha256.New()
		for _, r := range rs {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			h.Write(b)
		}
		one, err := cache.NewSnapshot(hex.EncodeToString(h.Sum(nil))[:16], map[resource.Type][]types.Resource{typ: rs})
		if err != nil {
			t.Fatal(err)
		}
		idx := cache.GetResponseType(typ)
		snap.Resources[idx] = one.Resources[idx]
	}
	if err := x.cache.SetSnapshot(context.Background(), testNodeID, snap); err != nil {
		t.Fatal(err)
	}
	return snap.GetVersion(resource.ClusterType)
}

func (x *xdsServer) requests() []*discoverygrpc.DiscoveryRequest {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]*discoverygrpc.DiscoveryRequest(nil), x.reqs...)
}

// procHandler scripts the fake ext_proc server: it returns the reply to a
// message, nil for "continue unchanged", or an error to end the stream
// with (errCloseOK ends it with status OK).
type procHandler func(ps *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error)

var errCloseOK = errors.New("close the stream with OK")

type procRole string

const (
	roleDownstream procRole = "downstream"
	roleUpstream   procRole = "upstream"
)

// procStream is one Process stream the fake server handles.
type procStream struct {
	id         int
	role       procRole
	deployment string
	source     string
	msgs       []*extprocsvc.ProcessingRequest
	ctx        context.Context
}

// fakeExtProc is a scripted ext_proc server on a Unix socket, as the
// sidecar is in production. Streams are told apart by their attributes:
// the downstream filter asks for source.address, the upstream one for the
// host's deployment.
type fakeExtProc struct {
	extprocsvc.UnimplementedExternalProcessorServer
	socket string

	mu         sync.Mutex
	downstream procHandler
	upstream   procHandler
	streams    []*procStream
	ended      map[int]error // how each stream ended, as the server saw it
}

func startExtProc(t *testing.T) *fakeExtProc {
	t.Helper()
	dir, err := shortTempDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = removeAll(dir) })
	f := &fakeExtProc{socket: filepath.Join(dir, "extproc.sock"), ended: map[int]error{}}
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	extprocsvc.RegisterExternalProcessorServer(g, f)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return f
}

func (f *fakeExtProc) script(down, up procHandler) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.downstream, f.upstream = down, up
}

// snapshot returns copies of the streams seen so far.
func (f *fakeExtProc) snapshot() []*procStream {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*procStream, len(f.streams))
	for i, s := range f.streams {
		c := *s
		c.msgs = append([]*extprocsvc.ProcessingRequest(nil), s.msgs...)
		out[i] = &c
	}
	return out
}

func (f *fakeExtProc) streamsOf(role procRole) []*procStream {
	var out []*procStream
	for _, s := range f.snapshot() {
		if s.role == role {
			out = append(out, s)
		}
	}
	return out
}

func (f *fakeExtProc) Process(srv extprocsvc.ExternalProcessor_ProcessServer) (err error) {
	f.mu.Lock()
	ps := &procStream{id: len(f.streams), ctx: srv.Context()}
	f.streams = append(f.streams, ps)
	f.mu.Unlock()
	defer func() {
		ended := err
		if ended == nil {
			ended = srv.Context().Err()
		}
		f.mu.Lock()
		f.ended[ps.id] = ended
		f.mu.Unlock()
	}()
	for {
		req, err := srv.Recv()
		if err != nil {
			return nil
		}
		f.mu.Lock()
		if len(ps.msgs) == 0 {
			attrs := req.GetAttributes()[attributesKey].GetFields()
			if d, ok := attrs[xdstranslate.DeploymentAttribute]; ok {
				ps.role, ps.deployment = roleUpstream, d.GetStringValue()
			} else {
				ps.role = roleDownstream
				ps.source = attrs["source.address"].GetStringValue()
			}
		}
		ps.msgs = append(ps.msgs, req)
		h := f.downstream
		if ps.role == roleUpstream {
			h = f.upstream
		}
		f.mu.Unlock()
		var resp *extprocsvc.ProcessingResponse
		if h != nil {
			resp, err = h(ps, req)
		}
		switch {
		case errors.Is(err, errCloseOK):
			return nil
		case err != nil:
			return err
		case resp == nil:
			resp = continueReply(req)
		}
		if err := srv.Send(resp); err != nil {
			return nil
		}
	}
}

// continueReply answers a message with CONTINUE and no changes.
func continueReply(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
	return reply(req, &extprocsvc.CommonResponse{})
}

// reply answers a message with common.
func reply(req *extprocsvc.ProcessingRequest, common *extprocsvc.CommonResponse) *extprocsvc.ProcessingResponse {
	switch req.GetRequest().(type) {
	case *extprocsvc.ProcessingRequest_RequestHeaders:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocsvc.HeadersResponse{Response: common}}}
	case *extprocsvc.ProcessingRequest_ResponseHeaders:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocsvc.HeadersResponse{Response: common}}}
	case *extprocsvc.ProcessingRequest_RequestBody:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_RequestBody{RequestBody: &extprocsvc.BodyResponse{Response: common}}}
	case *extprocsvc.ProcessingRequest_ResponseBody:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseBody{ResponseBody: &extprocsvc.BodyResponse{Response: common}}}
	}
	panic(fmt.Sprintf("no reply for %T", req.GetRequest()))
}

func setHeaders(kv ...string) *extprocsvc.HeaderMutation {
	m := &extprocsvc.HeaderMutation{}
	for i := 0; i+1 < len(kv); i += 2 {
		m.SetHeaders = append(m.SetHeaders, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])}})
	}
	return m
}

// headerValue reads a header from an ext_proc HeaderMap.
func headerValue(hm *corev3.HeaderMap, key string) (string, bool) {
	for _, h := range hm.GetHeaders() {
		if h.GetKey() == key {
			return string(h.GetRawValue()), true
		}
	}
	return "", false
}

// routeByModel is the downstream script Tollgate's ext_proc follows: read
// the model from the buffered body and select its route with
// x-tollgate-route and clear_route_cache.
func routeByModel(routes map[string]string) procHandler {
	return func(_ *procStream, req *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		b := req.GetRequestBody()
		if b == nil {
			return nil, nil
		}
		var body struct{ Model string }
		_ = json.Unmarshal(b.GetBody(), &body)
		r, ok := routes[body.Model]
		if !ok {
			return nil, nil
		}
		return reply(req, &extprocsvc.CommonResponse{HeaderMutation: setHeaders(xdstranslate.RouteHeader, r), ClearRouteCache: true}), nil
	}
}

// upstreamServer is a recording HTTP upstream.
type upstreamServer struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []recorded
	handler func(w http.ResponseWriter, r *http.Request, body []byte)
}

type recorded struct {
	method, path, host string
	header             http.Header
	body               []byte
	contentLength      int64
	transferEncoding   []string
	protoMajor         int
	sni                string
}

func newUpstream(t *testing.T, h func(w http.ResponseWriter, r *http.Request, body []byte)) *upstreamServer {
	u := &upstreamServer{handler: h}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

func (u *upstreamServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := recorded{method: r.Method, path: r.URL.RequestURI(), host: r.Host, header: r.Header.Clone(), body: body,
		contentLength: r.ContentLength, transferEncoding: r.TransferEncoding, protoMajor: r.ProtoMajor}
	if r.TLS != nil {
		rec.sni = r.TLS.ServerName
	}
	u.mu.Lock()
	u.reqs = append(u.reqs, rec)
	h := u.handler
	u.mu.Unlock()
	if h == nil {
		w.Header().Set("content-type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
		return
	}
	h(w, r, body)
}

func (u *upstreamServer) requests() []recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]recorded(nil), u.reqs...)
}

// logBuffer collects the harness's logs and shows them when a test fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is one test's world: xDS server, fake ext_proc, data plane.
type env struct {
	t         *testing.T
	xds       *xdsServer
	proc      *fakeExtProc
	opts      xdstranslate.Options
	dp        *DataPlane
	accessLog *logBuffer
	logs      *logBuffer
	client    *http.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	o := xdstranslate.DefaultOptions()
	o.ListenAddress = "127.0.0.1"
	o.ListenPort = freePort(t)
	o.MessageTimeout = 3 * time.Second
	o.RouteTimeout = 20 * time.Second
	o.StreamIdleTimeout = 20 * time.Second
	o.PerTryIdleTimeout = 10 * time.Second
	o.ConnectTimeout = 2 * time.Second
	o.MaxRequestBytes = 256 << 10
	return &env{
		t:         t,
		xds:       startXDS(t),
		proc:      startExtProc(t),
		opts:      o,
		accessLog: &logBuffer{},
		logs:      &logBuffer{},
		client:    &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true}},
	}
}

// translate turns a gateway into Envoy resources with the env's options.
func (e *env) translate(g *ir.Gateway) *xdstranslate.Envoy {
	e.t.Helper()
	g.Sort()
	out, err := xdstranslate.TranslateEnvoy(g, e.opts)
	if err != nil {
		e.t.Fatalf("translating the test gateway: %v", err)
	}
	return out
}

// start publishes the gateway and starts the data plane against it.
func (e *env) start(g *ir.Gateway) {
	e.t.Helper()
	e.startWith(e.translate(g))
}

func (e *env) startWith(res *xdstranslate.Envoy) {
	e.t.Helper()
	e.xds.publish(e.t, res)
	boot, err := envoy.Render(envoy.Params{
		NodeID: testNodeID, AdminPort: uint16(freePort(e.t)),
		XDSHost: "127.0.0.1", XDSPort: uint16(e.xds.addr.Port),
		ExtProcSocket: e.proc.socket,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	dp, err := New(context.Background(), Config{
		Bootstrap: boot,
		Logger:    slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AccessLog: e.accessLog,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.dp = dp
	e.t.Cleanup(func() {
		_ = dp.Close()
		if e.t.Failed() {
			e.t.Logf("data plane log:\n%s", e.logs.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := dp.WaitReady(ctx); err != nil {
		e.t.Fatalf("%v\n%s", err, e.logs.String())
	}
}

func (e *env) url(path string) string { return "http://" + e.dp.Addr() + path }

// post sends a JSON body and returns the status, headers and body.
func (e *env) post(path, body string, hdr ...string) (int, http.Header, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url(path), strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("content-type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("POST %s: %v", path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// accessLines parses the JSON access log lines written so far.
func (e *env) accessLines() []map[string]any {
	e.t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(e.accessLog.String()), "\n") {
		if line == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			e.t.Fatalf("access log line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// lastAccess waits for the access log line of the last request (it is
// written when the stream ends, just after the client has its response).
func (e *env) lastAccess(n int) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines := e.accessLines()
		if len(lines) >= n {
			return lines[n-1]
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("access log has %d lines, want %d", len(lines), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// shortTempDir keeps Unix socket paths under the 108-byte limit that
// t.TempDir's long names can exceed.
func shortTempDir() (string, error) { return os.MkdirTemp("", "tgdp") }

func removeAll(dir string) error { return os.RemoveAll(dir) }

// freePort finds a port that is free now, below Linux's ephemeral range
// (32768 and up) so that outgoing connections cannot take it before the
// data plane binds it.
func freePort(t *testing.T) uint32 {
	t.Helper()
	return uint32(testport.Free(t))
}

// testGateway builds gateways for tests.
type testGateway struct {
	g ir.Gateway
}

// provider adds a provider for an upstream URL and returns its id.
func (tg *testGateway) provider(kind, baseURL string) uuid.UUID {
	id := uuid.New()
	tg.g.Providers = append(tg.g.Providers, ir.Provider{ID: id, Name: "p-" + id.String()[:8], Kind: kind, BaseURL: baseURL})
	return id
}

type deployment struct {
	provider uuid.UUID
	weight   int32
	priority int32
}

// model adds a model and returns its route name and deployment ids.
func (tg *testGateway) model(name string, deps ...deployment) (string, []uuid.UUID) {
	m := ir.Model{ID: uuid.New(), Name: name}
	var ids []uuid.UUID
	for _, d := range deps {
		id := uuid.New()
		ids = append(ids, id)
		m.Deployments = append(m.Deployments, ir.Deployment{ID: id, ProviderID: d.provider, UpstreamModel: name, Weight: d.weight, Priority: d.priority})
	}
	tg.g.Models = append(tg.g.Models, m)
	return m.RouteName(), ids
}
