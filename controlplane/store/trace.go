package store

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"modernc.org/sqlite"
)

// Each InTx inside a traced operation (an admin call, a usage batch, a
// background job) is a child span of it, tollgate.db.transaction: the
// database system, the attempts it took, whether it was retried, and its
// outcome. It carries no SQL and no value, and no error message (a
// constraint error's message quotes the row): only the SQLSTATE or SQLite
// result code and a class of error.

const txSpanName = "tollgate.db.transaction"

var (
	attrDBSystem   = attribute.Key("db.system.name")
	attrDBStatus   = attribute.Key("db.response.status_code")
	attrAttempts   = attribute.Key("tollgate.db.attempts")
	attrRetried    = attribute.Key("tollgate.db.retried")
	attrOutcome    = attribute.Key("tollgate.outcome")
	attrErrorType  = attribute.Key("error.type")
	outcomeOK      = attrOutcome.String("committed")
	outcomeFailed  = attrOutcome.String("error")
	txSpanStartOpt = trace.WithSpanKind(trace.SpanKindClient)
)

// startTxSpan starts InTx's span when ctx's span is recording, and returns
// nil otherwise: transactions outside a trace (xDS polling, quota leases)
// cost nothing and start no trace of their own. The span comes from the
// parent's provider, so the store needs none of its own.
func (s *Store) startTxSpan(ctx context.Context) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, nil
	}
	return parent.TracerProvider().Tracer("github.com/tollgate-dev/tollgate/controlplane/store").
		Start(ctx, txSpanName, txSpanStartOpt, trace.WithAttributes(attrDBSystem.String(dbSystem(s.dialect))))
}

// endTxSpan ends span (nil: none) after attempts attempts that ended with
// err.
func endTxSpan(span trace.Span, attempts int, err error) {
	if span == nil {
		return
	}
	attrs := []attribute.KeyValue{attrAttempts.Int(attempts), attrRetried.Bool(attempts > 1), outcomeOK}
	if err != nil {
		attrs[2] = outcomeFailed
		attrs = append(attrs, attrErrorType.String(txErrorType(err)))
		if code := dbStatusCode(err); code != "" {
			attrs = append(attrs, attrDBStatus.String(code))
		}
		span.SetStatus(codes.Error, "")
	}
	span.SetAttributes(attrs...)
	span.End()
}

// txErrorType classes a failed transaction's error for error.type.
func txErrorType(err error) string {
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case IsRetryable(err):
		return "retries_exhausted"
	case dbStatusCode(err) != "":
		return "database_error"
	}
	// The function the transaction ran refused (a validation, a missing
	// row): its error is the caller's to report.
	return "_OTHER"
}

// dbStatusCode is the database's code for err: PostgreSQL's and
// CockroachDB's SQLSTATE, SQLite's extended result code; "" when err is
// not the database's.
func dbStatusCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		return strconv.Itoa(liteErr.Code())
	}
	return ""
}

// TxStats counts the transactions InTx ran under a context from
// WithTxStats, and their retries, for a caller that runs several and
// reports them on its own span (a usage batch). Safe for concurrent use.
type TxStats struct {
	transactions, retries atomic.Int64
}

// Transactions is how many transactions ran (each counted once, however
// many attempts it took).
func (t *TxStats) Transactions() int64 { return t.transactions.Load() }

// Retries is how many attempts they took beyond the first.
func (t *TxStats) Retries() int64 { return t.retries.Load() }

type txStatsKey struct{}

// WithTxStats returns a context under which InTx counts its transactions
// and retries in the returned TxStats.
func WithTxStats(ctx context.Context) (context.Context, *TxStats) {
	st := &TxStats{}
	return context.WithValue(ctx, txStatsKey{}, st), st
}

func countTx(ctx context.Context, attempts int) {
	if st, ok := ctx.Value(txStatsKey{}).(*TxStats); ok {
		st.transactions.Add(1)
		st.retries.Add(int64(max(attempts-1, 0)))
	}
}
