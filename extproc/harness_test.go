package extproc

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
)

// fakeConfig is an in-memory Config.
type fakeConfig struct {
	ready     chan struct{}
	keys      map[string]*configv1.Key
	tenants   map[string]*configv1.Tenant
	providers map[string]*configv1.Provider
	models    []*configv1.Model
}

func (c *fakeConfig) Ready() <-chan struct{}                 { return c.ready }
func (c *fakeConfig) Key(h string) *configv1.Key             { return c.keys[h] }
func (c *fakeConfig) Tenant(id string) *configv1.Tenant      { return c.tenants[id] }
func (c *fakeConfig) Provider(id string) *configv1.Provider  { return c.providers[id] }
func (c *fakeConfig) Models(tenant string) []*configv1.Model { return c.models }
func (c *fakeConfig) Model(tenant, name string) *configv1.Model {
	for _, m := range c.models {
		if m.GetName() == name {
			return m
		}
	}
	return nil
}

// fakeUsage collects usage records.
type fakeUsage struct {
	mu   sync.Mutex
	recs []*usagev1.UsageRecord
}

func (f *fakeUsage) Record(r *usagev1.UsageRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recs = append(f.recs, r)
}

func (f *fakeUsage) records() []*usagev1.UsageRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*usagev1.UsageRecord(nil), f.recs...)
}

// fixture is a gateway with one tenant, its key, and a model "smart" served
// by Anthropic first and OpenAI second.
type fixture struct {
	t      testing.TB
	cfg    *fakeConfig
	usage  *fakeUsage
	server *Server
	key    string // the client's secret
	clock  time.Time
}

const (
	tenantID   = "00000000-0000-4000-8000-0000000000a1"
	anthropicD = "00000000-0000-4000-8000-0000000000e1"
	openaiD    = "00000000-0000-4000-8000-0000000000e2"
)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	sec, err := secret.New(secret.APIKey)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	close(ready)
	f := &fixture{t: t, usage: &fakeUsage{}, key: sec.Plaintext, clock: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	f.cfg = &fakeConfig{
		ready: ready,
		keys: map[string]*configv1.Key{xdstranslate.KeyResourceName(sec.Hash): {
			KeyId: "00000000-0000-4000-8000-0000000000b1", TenantId: tenantID, Prefix: sec.Prefix,
		}},
		tenants: map[string]*configv1.Tenant{tenantID: {TenantId: tenantID, Slug: "acme", Status: configv1.TenantStatus_TENANT_STATUS_ACTIVE}},
		providers: map[string]*configv1.Provider{
			"p-anthropic": {ProviderId: "p-anthropic", Name: "anthropic", Kind: configv1.ProviderKind_PROVIDER_KIND_ANTHROPIC, BaseUrl: "https://api.anthropic.com", Credential: "sk-ant-provider"},
			"p-openai":    {ProviderId: "p-openai", Name: "openai", Kind: configv1.ProviderKind_PROVIDER_KIND_OPENAI, BaseUrl: "https://api.openai.com", Credential: "sk-openai-provider"},
		},
		models: []*configv1.Model{{
			ModelId: "m1", Name: "smart", Route: "model-m1",
			Deployments: []*configv1.Deployment{
				{DeploymentId: anthropicD, ProviderId: "p-anthropic", UpstreamModel: "claude-sonnet-4-5", Weight: 1, Priority: 0},
				{DeploymentId: openaiD, ProviderId: "p-openai", UpstreamModel: "gpt-4o", Weight: 1, Priority: 1},
			},
			Prices: []*configv1.Price{{
				EffectiveTime:      timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
				InputMicrosPerMtok: 3_000_000, OutputMicrosPerMtok: 15_000_000, CachedInputMicrosPerMtok: 300_000,
			}},
		}},
	}
	f.server = New(Options{Config: f.cfg, Usage: f.usage, Now: func() time.Time { return f.clock }})
	return f
}

// fakeStream plays Envoy's side of one ext_proc stream.
type fakeStream struct {
	ctx  context.Context
	in   chan *extprocv3.ProcessingRequest
	out  chan *extprocv3.ProcessingResponse
	done chan error
}

func (f *fixture) open() *fakeStream {
	s := &fakeStream{ctx: f.t.Context(), in: make(chan *extprocv3.ProcessingRequest), out: make(chan *extprocv3.ProcessingResponse, 1), done: make(chan error, 1)}
	go func() { s.done <- f.server.process(s) }()
	return s
}

func (s *fakeStream) Context() context.Context { return s.ctx }

func (s *fakeStream) Recv() (*extprocv3.ProcessingRequest, error) {
	m, ok := <-s.in
	if !ok {
		return nil, io.EOF
	}
	return m, nil
}

func (s *fakeStream) Send(r *extprocv3.ProcessingResponse) error {
	s.out <- r
	return nil
}

// exchange sends m and returns the reply.
func (s *fakeStream) exchange(t testing.TB, m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	t.Helper()
	select {
	case s.in <- m:
	case <-time.After(5 * time.Second):
		t.Fatal("the processor did not read the message")
	}
	return s.reply(t)
}

func (s *fakeStream) reply(t testing.TB) *extprocv3.ProcessingResponse {
	t.Helper()
	select {
	case r := <-s.out:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no reply from the processor")
	}
	return nil
}

// close ends the stream as Envoy does when the request is over.
func (s *fakeStream) close(t testing.TB) {
	t.Helper()
	close(s.in)
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("the processor returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the processor did not end")
	}
}

func headerMap(kv ...string) *corev3.HeaderMap {
	hm := &corev3.HeaderMap{}
	for i := 0; i < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return hm
}

func reqHeaders(eos bool, kv ...string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers: headerMap(kv...), EndOfStream: eos,
	}}}
}

// upstreamHeaders is the first message of a try's stream, with the
// deployment Envoy picked.
func upstreamHeaders(deployment string, kv ...string) *extprocv3.ProcessingRequest {
	m := reqHeaders(false, kv...)
	m.Attributes = map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: map[string]*structpb.Value{
		xdstranslate.DeploymentAttribute: structpb.NewStringValue(deployment),
	}}}
	return m
}

func reqBody(b string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte(b), EndOfStream: true}}}
}

func respHeaders(eos bool, kv ...string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: headerMap(kv...), EndOfStream: eos}}}
}

func respBody(b string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte(b), EndOfStream: eos}}}
}

// immediateOf returns the status and decoded JSON body of an immediate
// response, failing if r is not one.
func immediateOf(t *testing.T, r *extprocv3.ProcessingResponse) (int, map[string]any) {
	t.Helper()
	ir := r.GetImmediateResponse()
	if ir == nil {
		t.Fatalf("want an immediate response, got %v", r)
	}
	var body map[string]any
	if err := json.Unmarshal(ir.GetBody(), &body); err != nil {
		t.Fatalf("immediate body is not JSON: %v: %s", err, ir.GetBody())
	}
	return int(ir.GetStatus().GetCode()), body
}

// setHeaders returns the header mutation of a reply as a map, and the
// removed headers.
func mutations(r *extprocv3.ProcessingResponse) (set map[string]string, removed []string, common *extprocv3.CommonResponse) {
	switch x := r.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		common = x.RequestHeaders.GetResponse()
	case *extprocv3.ProcessingResponse_RequestBody:
		common = x.RequestBody.GetResponse()
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		common = x.ResponseHeaders.GetResponse()
	case *extprocv3.ProcessingResponse_ResponseBody:
		common = x.ResponseBody.GetResponse()
	}
	set = map[string]string{}
	for _, h := range common.GetHeaderMutation().GetSetHeaders() {
		set[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
	}
	return set, common.GetHeaderMutation().GetRemoveHeaders(), common
}

// attrs builds the attributes Envoy sends with a stream's first message.
func attrs(kv ...string) map[string]*structpb.Struct {
	fields := map[string]*structpb.Value{}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] != "" {
			fields[kv[i]] = structpb.NewStringValue(kv[i+1])
		}
	}
	return map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: fields}}
}
