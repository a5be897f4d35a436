package tollgatecmd

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
)

// `tollgate dev` runs ext_proc beside the control plane: it gets its
// configuration over xDS, serves Envoy's ext_proc streams, and delivers the
// usage record of a request to the store.
func TestDevExtProcRecordsUsageInTheStore(t *testing.T) {
	dir := t.TempDir()
	adminAddr, _, extprocAddr, logs := startDevAll(t, dir)
	token, err := os.ReadFile(filepath.Join(dir, "operator-token"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+strings.TrimSpace(string(token)))
	adminConn, err := grpc.NewClient(adminAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = adminConn.Close() }()
	if _, err := adminv1.NewTenantServiceClient(adminConn).CreateTenant(ctx, &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{Slug: "acme"}}); err != nil {
		t.Fatal(err)
	}
	key, err := adminv1.NewKeyServiceClient(adminConn).CreateKey(ctx, &adminv1.CreateKeyRequest{Tenant: "acme", Key: &adminv1.Key{Name: "ci"}})
	if err != nil {
		t.Fatal(err)
	}
	prov, err := adminv1.NewProviderServiceClient(adminConn).CreateProvider(ctx, &adminv1.CreateProviderRequest{Provider: &adminv1.Provider{
		Name: "openai", Kind: adminv1.ProviderKind_PROVIDER_KIND_OPENAI, BaseUrl: "http://127.0.0.1:9", Credential: "sk-provider",
	}})
	if err != nil {
		t.Fatal(err)
	}
	model, err := adminv1.NewModelServiceClient(adminConn).CreateModel(ctx, &adminv1.CreateModelRequest{Model: &adminv1.Model{
		Name: "gpt-4o-mini", Deployments: []*adminv1.Deployment{{ProviderId: prov.GetProvider().GetId(), UpstreamModel: "gpt-4o-mini"}},
		Pricing: &adminv1.Pricing{InputMicrosPerMtok: 150_000, OutputMicrosPerMtok: 600_000},
	}})
	if err != nil {
		t.Fatal(err)
	}

	conn, err := grpc.NewClient(extprocAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		hc, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
		if err == nil && hc.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ext_proc not serving after 10s: %v %v", hc, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	client := extprocv3.NewExternalProcessorClient(conn)
	hdrs := func(kv ...string) *corev3.HeaderMap {
		hm := &corev3.HeaderMap{}
		for i := 0; i < len(kv); i += 2 {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
		}
		return hm
	}
	send := func(s extprocv3.ExternalProcessor_ProcessClient, m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		t.Helper()
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// The key and the model reach ext_proc within a second of their
	// creation; until then the request is refused (401, then 404).
	var down extprocv3.ExternalProcessor_ProcessClient
	requestID := ""
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		requestID = uuid.NewString() // as Envoy makes them
		down, err = client.Process(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		r := send(down, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: hdrs(":method", "POST", ":path", "/v1/chat/completions", "x-request-id", requestID, "authorization", "Bearer "+key.GetSecret()),
		}}})
		// ext_proc names the request itself; the try carries that name.
		for _, h := range r.GetRequestHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
			if h.GetHeader().GetKey() == "x-request-id" {
				requestID = string(h.GetHeader().GetRawValue())
			}
		}
		if r.GetImmediateResponse() == nil {
			r = send(down, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{
				Body: []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`), EndOfStream: true,
			}}})
		}
		if ir := r.GetImmediateResponse(); ir != nil {
			if time.Since(start) > settleTime {
				t.Fatalf("still refused %v after the key and model were made: %s", settleTime, ir.GetBody())
			}
			continue
		}
		var route string
		for _, h := range r.GetRequestBody().GetResponse().GetHeaderMutation().GetSetHeaders() {
			if h.GetHeader().GetKey() == xdstranslate.RouteHeader {
				route = string(h.GetHeader().GetRawValue())
			}
		}
		if route != "model-"+model.GetModel().GetId() {
			t.Fatalf("route header %q", route)
		}
		break
	}

	up, err := client.Process(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The deployment id is the one the control plane put in the endpoint
	// metadata Envoy reports; the admin API does not show it, the store does.
	deployment := deploymentID(t, dir)
	send(up, &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: hdrs(":path", "/v1/chat/completions", "x-request-id", requestID)}},
		Attributes: map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: map[string]*structpb.Value{
			xdstranslate.DeploymentAttribute: structpb.NewStringValue(deployment),
		}}},
	})
	send(up, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
		Headers: hdrs(":status", "200", "content-type", "application/json"),
	}}})
	send(up, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{EndOfStream: true,
		Body: []byte(`{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500}}`),
	}}})
	_ = up.CloseSend()
	_ = down.CloseSend()

	st, err := store.Open(t.Context(), "sqlite://"+filepath.Join(dir, "tollgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		rec, err := st.Client().UsageRecord.Query().Where(usagerecord.RequestID(requestID)).Only(context.Background())
		if err == nil {
			// 1000 × $0.15 + 500 × $0.60 per million = 150 + 300 µ$.
			if rec.InputTokens != 1000 || rec.OutputTokens != 500 || rec.CostMicros != 450 || rec.Model != "gpt-4o-mini" || rec.Provider != "openai" || rec.StatusCode != http.StatusOK {
				t.Errorf("usage record = %+v", rec)
			}
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no usage record in the store 10s after the request: %v\nlogs:\n%s", err, logs)
		}
	}
}

// deploymentID reads a model's only deployment id from dev's database.
func deploymentID(t *testing.T, dir string) string {
	t.Helper()
	st, err := store.Open(t.Context(), "sqlite://"+filepath.Join(dir, "tollgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	ds, err := st.Client().ModelDeployment.Query().All(t.Context())
	if err != nil || len(ds) != 1 {
		t.Fatalf("deployments: %v %v", ds, err)
	}
	return ds[0].ID.String()
}
