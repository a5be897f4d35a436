package xds_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/controlplane/ir"
	"github.com/tollgate-dev/tollgate/controlplane/policy"
	"github.com/tollgate-dev/tollgate/controlplane/xds"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
)

// bigGateway is the benchmark's gateway: 10,000 tenants, 100,000 keys and
// 1,000 models over 10 providers.
func bigGateway(tenants, keys, models int) *ir.Gateway {
	g := &ir.Gateway{}
	id := func(kind byte, i int) uuid.UUID {
		var u uuid.UUID
		u[0] = kind
		u[12], u[13], u[14], u[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		u[6], u[8] = 0x40, 0x80
		return u
	}
	rpm := int64(600)
	for i := range tenants {
		g.Tenants = append(g.Tenants, ir.Tenant{ID: id(1, i), Slug: fmt.Sprintf("tenant-%d", i), Status: ir.StatusActive, Policy: &policy.Spec{RequestsPerMinute: &rpm}})
	}
	for i := range keys {
		h := sha256.Sum256([]byte(fmt.Sprint("key", i)))
		g.Keys = append(g.Keys, ir.Key{ID: id(2, i), TenantID: id(1, i%tenants), Prefix: "tg-abcdefgh", Hash: h[:]})
	}
	kinds := []string{ir.KindOpenAI, ir.KindAnthropic, ir.KindGemini}
	for i := range 10 {
		g.Providers = append(g.Providers, ir.Provider{ID: id(3, i), Name: fmt.Sprint("p", i), Kind: kinds[i%3], BaseURL: fmt.Sprintf("https://api%d.example.com", i), Credential: []byte("sk-x")})
	}
	for i := range models {
		g.Models = append(g.Models, ir.Model{
			ID: id(4, i), Name: fmt.Sprint("model-", i),
			Deployments: []ir.Deployment{
				{ID: id(5, 2*i), ProviderID: id(3, i%10), UpstreamModel: "m", Weight: 1, Priority: 0},
				{ID: id(5, 2*i+1), ProviderID: id(3, (i+1)%10), UpstreamModel: "m", Weight: 1, Priority: 1},
			},
			Prices: []ir.Price{{EffectiveFrom: time.Unix(0, 0).UTC(), InputMicrosPerMtok: 1, OutputMicrosPerMtok: 2}},
		})
	}
	g.Sort()
	return g
}

func plainOpen(sealed []byte, _ uuid.UUID) ([]byte, error) { return sealed, nil }

func translateAndPublish(b *testing.B, p *xds.Publisher, g *ir.Gateway) {
	envoy, err := xdstranslate.TranslateEnvoy(g, xdstranslate.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := xdstranslate.TranslateConfig(g, plainOpen)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Publish(context.Background(), envoy, cfg, nil); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkTranslateAndPublish measures a full rebuild: translating the
// gateway and publishing it into fresh caches (the first publication, where
// every resource is new).
func BenchmarkTranslateAndPublish(b *testing.B) {
	g := bigGateway(10_000, 100_000, 1_000)
	b.ReportAllocs()
	for b.Loop() {
		translateAndPublish(b, xds.NewPublisher(slog.New(slog.DiscardHandler)), g)
	}
}

// BenchmarkRepublishUnchanged measures the periodic rebuild when nothing
// changed: translation plus the comparison that finds no delta.
func BenchmarkRepublishUnchanged(b *testing.B) {
	g := bigGateway(10_000, 100_000, 1_000)
	p := xds.NewPublisher(slog.New(slog.DiscardHandler))
	translateAndPublish(b, p, g)
	b.ReportAllocs()
	for b.Loop() {
		translateAndPublish(b, p, g)
	}
}

// BenchmarkKeyRevocationDelta measures what one revocation costs a
// connected ext_proc: the bytes of the delta response on the wire, next to
// the size of the first full sync.
func BenchmarkKeyRevocationDelta(b *testing.B) {
	g := bigGateway(10_000, 100_000, 1_000)
	p := xds.NewPublisher(slog.New(slog.DiscardHandler))
	translateAndPublish(b, p, g)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := grpc.NewServer()
	xds.Register(ctx, srv, p)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx, grpc.MaxCallRecvMsgSize(256<<20))
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: nodeProto("bench"), TypeUrl: xds.KeyType}); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	first, err := st.Recv()
	if err != nil {
		b.Fatal(err)
	}
	firstBytes, firstTook, firstKeys := proto.Size(first), time.Since(start), len(first.GetResources())
	if err := st.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: xds.KeyType, ResponseNonce: first.GetNonce()}); err != nil {
		b.Fatal(err)
	}
	var deltaBytes, deltaNanos int64
	n := 0
	for b.Loop() {
		// Revoke one key (the view drops it), publish, wait for the delta.
		g.Keys = g.Keys[1:]
		t0 := time.Now()
		translateAndPublish(b, p, g)
		resp, err := st.Recv()
		if err != nil {
			b.Fatal(err)
		}
		deltaNanos += time.Since(t0).Nanoseconds()
		if len(resp.GetRemovedResources()) != 1 || len(resp.GetResources()) != 0 {
			b.Fatalf("delta removed %d and sent %d keys, want 1 and 0", len(resp.GetRemovedResources()), len(resp.GetResources()))
		}
		deltaBytes += int64(proto.Size(resp))
		n++
		if err := st.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: xds.KeyType, ResponseNonce: resp.GetNonce()}); err != nil {
			b.Fatal(err)
		}
	}
	// After the loop: b.Loop resets the metrics reported before it.
	b.ReportMetric(float64(firstBytes), "first-sync-bytes")
	b.ReportMetric(float64(firstTook.Milliseconds()), "first-sync-ms")
	b.ReportMetric(float64(firstKeys), "first-sync-keys")
	b.ReportMetric(float64(deltaBytes)/float64(n), "delta-bytes")
	b.ReportMetric(float64(deltaNanos)/float64(n)/1e6, "revoke-to-delta-ms")
}
