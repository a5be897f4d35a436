package usageingest

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/telemetry"
)

// Each batch is a span, tollgate.usage.ingest: its size, what became of
// its records, the rollup shard it added to and its transactions' retries
// (each transaction is a child span, see store). ext_proc puts the W3C
// trace context of each traced request on its record, so the batch's span
// continues the trace of its first traced record and links to the others':
// a batch of one traced request (the usual case at low traffic, and a
// test's) is part of that request's trace. A batch without traced records
// starts a trace of its own, sampled at the configured ratio.

const batchSpanName = "tollgate.usage.ingest"

var (
	attrBatchID  = attribute.Key("tollgate.usage.batch.id")
	attrRecords  = attribute.Key("tollgate.usage.records")
	attrAccepted = attribute.Key("tollgate.usage.records.accepted")
	attrRejected = attribute.Key("tollgate.usage.records.rejected")
	attrStored   = attribute.Key("tollgate.usage.records.stored")
	attrShard    = attribute.Key("tollgate.usage.rollup.shard")
	attrTxs      = attribute.Key("tollgate.db.transactions")
	attrRetries  = attribute.Key("tollgate.db.retries")
	attrOutcome  = attribute.Key("tollgate.outcome")
	attrErrType  = attribute.Key("error.type")
)

// batchTrace is a batch's span and what its attributes add up.
type batchTrace struct {
	span   trace.Span
	tx     *store.TxStats
	stored int
}

type batchTraceKey struct{}

// startBatch starts req's span when the server traces; nil when not.
func (s *Server) startBatch(ctx context.Context, req *usagev1.IngestRequest) (context.Context, *batchTrace) {
	if s.Tracers == nil {
		return ctx, nil
	}
	var (
		parent trace.SpanContext
		links  []trace.Link
	)
	for _, r := range req.GetRecords() {
		if len(r.GetTraceContext()) == 0 {
			continue
		}
		sc := trace.SpanContextFromContext(telemetry.Propagator().Extract(context.Background(), propagation.MapCarrier(r.GetTraceContext())))
		switch {
		case !sc.IsValid():
		case !parent.IsValid():
			parent = sc
		case sc.TraceID() != parent.TraceID():
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...),
		trace.WithAttributes(attrBatchID.Int64(int64(req.GetBatchId())), attrRecords.Int(len(req.GetRecords()))),
	}
	if parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	} else {
		opts = append(opts, trace.WithNewRoot())
	}
	ctx, span := s.Tracers.Tracer("github.com/tollgate-dev/tollgate/controlplane/usageingest").Start(ctx, batchSpanName, opts...)
	if !span.IsRecording() {
		return ctx, nil
	}
	b := &batchTrace{span: span}
	ctx, b.tx = store.WithTxStats(ctx)
	return context.WithValue(ctx, batchTraceKey{}, b), b
}

// batchOf is ctx's batch trace, or nil.
func batchOf(ctx context.Context) *batchTrace {
	b, _ := ctx.Value(batchTraceKey{}).(*batchTrace)
	return b
}

// addStored counts n records new to the store.
func (b *batchTrace) addStored(n int) {
	if b != nil {
		b.stored += n
	}
}

// setShard names the rollup shard the batch added to.
func (b *batchTrace) setShard(shard int32) {
	if b != nil {
		b.span.SetAttributes(attrShard.Int64(int64(shard)))
	}
}

// end ends the span of a batch answered with resp, or failed with err.
func (b *batchTrace) end(resp *usagev1.IngestResponse, err error) {
	if b == nil {
		return
	}
	attrs := []attribute.KeyValue{attrTxs.Int64(b.tx.Transactions()), attrRetries.Int64(b.tx.Retries())}
	if err != nil {
		// Never the error's text: a database error may quote a record.
		attrs = append(attrs, attrOutcome.String("error"), attrErrType.String("store_failed"))
		b.span.SetStatus(codes.Error, "the batch was not stored; ext_proc resends it")
	} else {
		attrs = append(attrs, attrOutcome.String("stored"), attrAccepted.Int(int(resp.GetAccepted())),
			attrRejected.Int(len(resp.GetRejected())), attrStored.Int(b.stored))
	}
	b.span.SetAttributes(attrs...)
	b.span.End()
}
