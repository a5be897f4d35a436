package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent"
)

// Each transaction inside a traced operation is a child span that counts
// its attempts; WithTxStats adds them up for the operation; a transaction
// outside a trace has no span.
func TestInTxSpansCountRetries(t *testing.T) {
	storetest.Run(t, func(t *testing.T, s *store.Store) {
		for _, savepoints := range []bool{false, true} {
			t.Run(fmt.Sprintf("savepoints=%v", savepoints), func(t *testing.T) {
				if savepoints {
					store.UseSavepointProtocol(s)
				}
				spans := tracetest.NewSpanRecorder()
				tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
				ctx, op := tp.Tracer("test").Start(context.Background(), "operation")
				ctx, stats := store.WithTxStats(ctx)
				calls := 0
				if err := s.InTx(ctx, func(tx *ent.Tx) error {
					if calls++; calls < 3 {
						return fmt.Errorf("simulated conflict: %w", &pgconn.PgError{Code: "40001"})
					}
					return createTenant(fmt.Sprint("traced-", savepoints))(tx)
				}); err != nil {
					t.Fatal(err)
				}
				refused := errors.New("refused by fn")
				if err := s.InTx(ctx, func(*ent.Tx) error { return refused }); !errors.Is(err, refused) {
					t.Fatal(err)
				}
				if err := s.InTx(context.Background(), func(*ent.Tx) error { return nil }); err != nil {
					t.Fatal(err)
				}
				op.End()

				if stats.Transactions() != 2 || stats.Retries() != 2 {
					t.Errorf("stats: %d transactions, %d retries; want 2 and 2", stats.Transactions(), stats.Retries())
				}
				var txs []sdktrace.ReadOnlySpan
				for _, sp := range spans.Ended() {
					if sp.Name() == "tollgate.db.transaction" {
						txs = append(txs, sp)
					}
				}
				if len(txs) != 2 {
					t.Fatalf("%d transaction spans, want the two traced ones", len(txs))
				}
				system := map[store.Dialect]string{store.SQLite: "sqlite", store.Postgres: "postgresql", store.CockroachDB: "cockroachdb"}[s.Dialect()]
				wants := []map[string]string{
					{"db.system.name": system, "tollgate.db.attempts": "3", "tollgate.db.retried": "true", "tollgate.outcome": "committed"},
					{"db.system.name": system, "tollgate.db.attempts": "1", "tollgate.db.retried": "false", "tollgate.outcome": "error", "error.type": "_OTHER"},
				}
				for i, sp := range txs {
					if sp.Parent().SpanID() != op.SpanContext().SpanID() || sp.SpanKind() != trace.SpanKindClient {
						t.Errorf("transaction %d: parent %s, kind %v; want a client span under the operation", i, sp.Parent().SpanID(), sp.SpanKind())
					}
					got := attrMap(sp.Attributes())
					for k, v := range wants[i] {
						if got[k] != v {
							t.Errorf("transaction %d: %s = %q, want %q (all: %v)", i, k, got[k], v, got)
						}
					}
					if i == 0 && got["error.type"] != "" {
						t.Errorf("the committed transaction has error.type %q", got["error.type"])
					}
				}
			})
		}
	})
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		out[string(kv.Key)] = kv.Value.String()
	}
	return out
}
