package usageingest

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

// A batch is a span in the trace of its first traced record, linked to the
// other records' traces, that tells what became of its records; its
// transaction is a child span. A batch sent again stores nothing new.
func TestBatchSpanJoinsTheTracesOfItsRecords(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		spans := tracetest.NewSpanRecorder()
		s := New(st, quiet())
		s.Tracers = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
		const (
			traceA, spanA = "6af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
			traceB, spanB = "7af7651916cd43dd8448eb211c80319c", "c7ad6b7169203331"
		)
		recs := []*usagev1.UsageRecord{record(0), record(1), record(2), record(3)}
		recs[1].TraceContext = map[string]string{"traceparent": "00-" + traceA + "-" + spanA + "-01"}
		recs[2].TraceContext = map[string]string{"traceparent": "00-" + traceB + "-" + spanB + "-01"}
		recs[3].TenantId = "not a tenant"
		for range 2 {
			if _, err := s.Store(context.Background(), &usagev1.IngestRequest{BatchId: 9, Records: recs}); err != nil {
				t.Fatal(err)
			}
		}
		// Untraced records only: the sampler (never, for new traces)
		// decides, and no span is recorded.
		if _, err := s.Store(context.Background(), &usagev1.IngestRequest{BatchId: 10, Records: []*usagev1.UsageRecord{record(4)}}); err != nil {
			t.Fatal(err)
		}

		var batches []sdktrace.ReadOnlySpan
		txParents := map[trace.SpanID]int{}
		for _, sp := range spans.Ended() {
			switch sp.Name() {
			case "tollgate.usage.ingest":
				batches = append(batches, sp)
			case "tollgate.db.transaction":
				txParents[sp.Parent().SpanID()]++
			}
		}
		if len(batches) != 2 {
			t.Fatalf("%d batch spans, want the two traced batches", len(batches))
		}
		for i, b := range batches {
			if b.SpanContext().TraceID().String() != traceA || b.Parent().SpanID().String() != spanA || b.SpanKind() != trace.SpanKindConsumer {
				t.Errorf("batch %d: trace %s, parent %s, kind %v; want a consumer span under the first traced record's %s/%s",
					i, b.SpanContext().TraceID(), b.Parent().SpanID(), b.SpanKind(), traceA, spanA)
			}
			if links := b.Links(); len(links) != 1 || links[0].SpanContext.TraceID().String() != traceB || links[0].SpanContext.SpanID().String() != spanB {
				t.Errorf("batch %d: links %v, want the second traced record's span", i, links)
			}
			if txParents[b.SpanContext().SpanID()] != 1 {
				t.Errorf("batch %d has %d transaction spans under it, want 1", i, txParents[b.SpanContext().SpanID()])
			}
			stored := "3"
			if i == 1 {
				stored = "0" // sent again: every record was stored already
			}
			got := attrs(b.Attributes())
			for k, v := range map[string]string{
				"tollgate.usage.batch.id": "9", "tollgate.usage.records": "4", "tollgate.usage.records.accepted": "3",
				"tollgate.usage.records.rejected": "1", "tollgate.usage.records.stored": stored, "tollgate.outcome": "stored",
				"tollgate.db.transactions": "1", "tollgate.db.retries": "0",
			} {
				if got[k] != v {
					t.Errorf("batch %d: %s = %q, want %q (all: %v)", i, k, got[k], v, got)
				}
			}
			if _, ok := got["tollgate.usage.rollup.shard"]; !ok {
				t.Errorf("batch %d names no rollup shard: %v", i, got)
			}
		}
	})
}

func attrs(kvs []attribute.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		out[string(kv.Key)] = kv.Value.String()
	}
	return out
}
