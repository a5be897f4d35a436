package xds_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/controlplane/xds"
	"github.com/tollgate-dev/tollgate/controlplane/xdstranslate"
)

// Each reconciliation is a root span with the version it left served and
// the nodes it was pushed to.
func TestReconcileIsARootSpan(t *testing.T) {
	st := storetest.SQLite(t)
	ring, err := keyring.New(keyring.Key{ID: "k1", Secret: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	log := slog.New(slog.DiscardHandler)
	pub := xds.NewPublisher(log)
	rec := &xds.Reconciler{Store: st, Keyring: ring, Options: xdstranslate.DefaultOptions(), Publisher: pub, Log: log, Tracers: tp}
	rec.Init()
	ctx, caller := tp.Tracer("test").Start(context.Background(), "caller")
	defer caller.End()
	if err := rec.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	var got sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.Name() == "tollgate.xds.reconcile" {
			got = s
		}
	}
	if got == nil {
		t.Fatal("no tollgate.xds.reconcile span")
	}
	if got.Parent().IsValid() {
		t.Errorf("the reconciliation's span has parent %s, want a root", got.Parent().SpanID())
	}
	attrs := map[string]string{}
	for _, a := range got.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	if attrs["tollgate.xds.version"] != pub.Status().Version || attrs["tollgate.xds.version"] == "" || attrs["tollgate.xds.nodes"] != "0" ||
		attrs["tollgate.outcome"] != "published" || attrs["tollgate.xds.keys"] != "0" {
		t.Errorf("attributes %v, want version %q, no nodes, no keys, published", attrs, pub.Status().Version)
	}
}
