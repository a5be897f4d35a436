package usageingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/usagerecord"
)

var (
	tenantA = uuid.MustParse("0a000000-0000-4000-8000-00000000000a")
	arrival = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func record(i int) *usagev1.UsageRecord {
	return &usagev1.UsageRecord{
		RequestId:         uuid.NewString(),
		TenantId:          tenantA.String(),
		Model:             "gpt-4o",
		Provider:          "openai",
		UpstreamModel:     "gpt-4o-2024-08-06",
		InputTokens:       int64(100 + i),
		OutputTokens:      int64(20 + i),
		CachedInputTokens: 64,
		ReasoningTokens:   3,
		Estimated:         i%2 == 1,
		CostMicros:        int64(1000 + i),
		StatusCode:        200,
		Streamed:          true,
		LatencyMs:         850,
		TtftMs:            120,
		Time:              timestamppb.New(arrival.Add(time.Duration(i) * time.Second)),
	}
}

func countRecords(t *testing.T, st *store.Store) int {
	t.Helper()
	n, err := st.Client().UsageRecord.Query().Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestStoreKeepsEveryFieldOfValidRecords(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		s := New(st, quiet())
		key := createKey(t, st, tenantA)
		in := record(1)
		in.KeyId = key.String()
		in.ErrorType = "upstream_timeout"
		in.StatusCode = 504
		in.RequestId = strings.ToUpper(in.RequestId)
		resp, err := s.Store(ctx, &usagev1.IngestRequest{BatchId: 7, Records: []*usagev1.UsageRecord{in}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetBatchId() != 7 || resp.GetAccepted() != 1 || len(resp.GetRejected()) != 0 {
			t.Fatalf("ack = %v, want batch 7 with 1 accepted", resp)
		}
		got, err := st.Client().UsageRecord.Query().Only(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := &ent.UsageRecord{
			RequestID: strings.ToLower(in.RequestId), TenantID: tenantA, APIKeyID: &key,
			Model: "gpt-4o", Provider: "openai", UpstreamModel: "gpt-4o-2024-08-06",
			InputTokens: 101, OutputTokens: 21, CachedInputTokens: 64, ReasoningTokens: 3,
			Estimated: true, CostMicros: 1001, StatusCode: 504, ErrorType: "upstream_timeout",
			Streamed: true, LatencyMs: 850, TtftMs: 120,
			// Truncated to the microsecond on every dialect.
			CreatedAt: arrival.Add(time.Second).Truncate(time.Microsecond),
		}
		if got.RequestID != want.RequestID || got.TenantID != want.TenantID || *got.APIKeyID != *want.APIKeyID ||
			got.Model != want.Model || got.Provider != want.Provider || got.UpstreamModel != want.UpstreamModel ||
			got.InputTokens != want.InputTokens || got.OutputTokens != want.OutputTokens ||
			got.CachedInputTokens != want.CachedInputTokens || got.ReasoningTokens != want.ReasoningTokens ||
			got.Estimated != want.Estimated || got.CostMicros != want.CostMicros || got.StatusCode != want.StatusCode ||
			got.ErrorType != want.ErrorType || got.Streamed != want.Streamed || got.LatencyMs != want.LatencyMs ||
			got.TtftMs != want.TtftMs || !got.CreatedAt.Equal(want.CreatedAt) {
			t.Errorf("stored\n%v\nwant\n%v", got, want)
		}
	})
}

// A batch that arrives twice (the sender lost the first acknowledgement) and
// a request repeated inside one batch are both counted once.
func TestResentBatchIsCountedOnce(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		s := New(st, quiet())
		var recs []*usagev1.UsageRecord
		for i := range 1200 { // more than one INSERT chunk
			recs = append(recs, record(i))
		}
		recs = append(recs, proto.Clone(recs[3]).(*usagev1.UsageRecord))
		batch := &usagev1.IngestRequest{BatchId: 1, Records: recs}
		for attempt := range 3 {
			resp, err := s.Store(ctx, batch)
			if err != nil {
				t.Fatalf("delivery %d: %v", attempt, err)
			}
			if int(resp.GetAccepted()) != len(recs) {
				t.Fatalf("delivery %d accepted %d of %d", attempt, resp.GetAccepted(), len(recs))
			}
		}
		if n := countRecords(t, st); n != 1200 {
			t.Errorf("%d rows after three deliveries, want 1200", n)
		}
		var sum []struct {
			Sum int64 `json:"sum"`
		}
		if err := st.Client().UsageRecord.Query().Aggregate(ent.Sum(usagerecord.FieldInputTokens)).Scan(ctx, &sum); err != nil {
			t.Fatal(err)
		}
		// 100..1299 once each.
		if want := int64(1200*100 + 1199*1200/2); sum[0].Sum != want {
			t.Errorf("input tokens sum to %d, want %d", sum[0].Sum, want)
		}
	})
}

func TestInvalidRecordsAreRejectedWithReasonsAndTheRestStored(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		s := New(st, quiet())
		bad := func(f func(r *usagev1.UsageRecord)) *usagev1.UsageRecord {
			r := record(0)
			f(r)
			return r
		}
		recs := []*usagev1.UsageRecord{
			record(0),
			bad(func(r *usagev1.UsageRecord) { r.TenantId = "acme" }),
			bad(func(r *usagev1.UsageRecord) { r.InputTokens, r.CostMicros = -1, -2 }),
			record(1),
			bad(func(r *usagev1.UsageRecord) { r.Time = nil }),
		}
		resp, err := s.Store(context.Background(), &usagev1.IngestRequest{BatchId: 3, Records: recs})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetAccepted() != 2 {
			t.Errorf("accepted %d, want 2", resp.GetAccepted())
		}
		want := map[int32]string{
			1: `tenant_id: must be a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), got "acme"`,
			2: "input_tokens: must not be negative, got -1; cost_micros: must not be negative, got -2",
			4: "time: is required: when the request arrived",
		}
		if len(resp.GetRejected()) != len(want) {
			t.Fatalf("rejected %v, want indexes 1, 2, 4", resp.GetRejected())
		}
		for _, r := range resp.GetRejected() {
			if r.GetReason() != want[r.GetIndex()] || r.GetRequestId() != recs[r.GetIndex()].GetRequestId() {
				t.Errorf("rejected #%d (%s): %q, want %q", r.GetIndex(), r.GetRequestId(), r.GetReason(), want[r.GetIndex()])
			}
		}
		if n := countRecords(t, st); n != 2 {
			t.Errorf("%d rows, want the 2 valid ones", n)
		}
	})
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *usagev1.UsageRecord)
		want   string // "" for valid
	}{
		{"valid", func(r *usagev1.UsageRecord) {}, ""},
		{"no key is fine", func(r *usagev1.UsageRecord) { r.KeyId = "" }, ""},
		{"status 0 means no response", func(r *usagev1.UsageRecord) { r.StatusCode = 0 }, ""},
		{"request id missing", func(r *usagev1.UsageRecord) { r.RequestId = "" }, "request_id: is required"},
		{"request id not a uuid", func(r *usagev1.UsageRecord) { r.RequestId = "req-1" }, `request_id: must be a UUID`},
		{"request id in braces", func(r *usagev1.UsageRecord) { r.RequestId = "{" + uuid.NewString() + "}" }, `request_id: must be a UUID`},
		{"tenant missing", func(r *usagev1.UsageRecord) { r.TenantId = "" }, "tenant_id: is required"},
		{"key not a uuid", func(r *usagev1.UsageRecord) { r.KeyId = "tgk_abc" }, "key_id: must be a UUID"},
		{"model too long", func(r *usagev1.UsageRecord) { r.Model = strings.Repeat("m", 256) }, "model: must be at most 255 bytes, got 256"},
		{"NUL in provider", func(r *usagev1.UsageRecord) { r.Provider = "open\x00ai" }, "provider: must not contain NUL bytes"},
		{"negative reasoning", func(r *usagev1.UsageRecord) { r.ReasoningTokens = -1 }, "reasoning_tokens: must not be negative"},
		{"negative latency", func(r *usagev1.UsageRecord) { r.LatencyMs = -1 }, "latency_ms: must not be negative"},
		{"status out of range", func(r *usagev1.UsageRecord) { r.StatusCode = 42 }, "status_code: must be an HTTP status"},
		{"time at the epoch", func(r *usagev1.UsageRecord) { r.Time = &timestamppb.Timestamp{} }, "time: must be after 2000-01-01T00:00:00Z"},
		{"time invalid", func(r *usagev1.UsageRecord) { r.Time = &timestamppb.Timestamp{Seconds: 1 << 62} }, "time: is not a valid timestamp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := record(0)
			r.KeyId = uuid.NewString()
			tt.change(r)
			err := Validate(r)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(reason(err), tt.want)):
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// If the store refuses a record that validation let through, the batch must
// not fail on every resend forever: the record is rejected on its own and
// the rest of the batch stored.
func TestRecordTheStoreRefusesIsRejectedAlone(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		s := New(st, quiet())
		req := &usagev1.IngestRequest{BatchId: 9}
		var rows []row
		for i := range 3 {
			r := record(i)
			req.Records = append(req.Records, r)
			rw, err := validate(r)
			if err != nil {
				t.Fatal(err)
			}
			rw.batchIndex = i
			rows = append(rows, rw)
		}
		// Past validation, as a bug there would let through.
		req.Records[1].OutputTokens = -7
		resp, err := s.write(context.Background(), req, &usagev1.IngestResponse{BatchId: 9, Accepted: 3}, rows)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetAccepted() != 2 || len(resp.GetRejected()) != 1 || resp.GetRejected()[0].GetIndex() != 1 ||
			!strings.Contains(resp.GetRejected()[0].GetReason(), "the store refused it") {
			t.Errorf("ack = %v, want record 1 rejected by the store and 2 accepted", resp)
		}
		if n := countRecords(t, st); n != 2 {
			t.Errorf("%d rows, want 2", n)
		}
	})
}

func createKey(t *testing.T, st *store.Store, tenantID uuid.UUID) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	var id uuid.UUID
	err := st.InTx(ctx, func(tx *ent.Tx) error {
		if _, err := tx.Tenant.Get(ctx, tenantID); ent.IsNotFound(err) {
			if err := tx.Tenant.Create().SetID(tenantID).SetSlug("t" + strings.ReplaceAll(tenantID.String()[:8], "-", "")).SetName("T").Exec(ctx); err != nil {
				return err
			}
		}
		k, err := tx.APIKey.Create().SetTenantID(tenantID).SetName("k-" + uuid.NewString()).SetPrefix("tgk_x").SetHash([]byte(uuid.NewString())).Save(ctx)
		if err != nil {
			return err
		}
		id = k.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func lastUsed(t *testing.T, st *store.Store, key uuid.UUID) (*time.Time, time.Time) {
	t.Helper()
	k, err := st.Client().APIKey.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return k.LastUsedAt, k.UpdatedAt
}

// last_used_at follows the latest use, never moves back, lags by at most a
// minute, and is not a change to the key (updated_at stays).
func TestKeysLastUsedMovesForward(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		key, other := createKey(t, st, tenantA), createKey(t, st, tenantA)
		_, updatedBefore := lastUsed(t, st, key)
		at := func(d time.Duration, k uuid.UUID) *usagev1.UsageRecord {
			r := record(0)
			r.KeyId = k.String()
			r.Time = timestamppb.New(arrival.Add(d))
			return r
		}
		send := func(s *Server, recs ...*usagev1.UsageRecord) {
			t.Helper()
			if _, err := s.Store(ctx, &usagev1.IngestRequest{Records: recs}); err != nil {
				t.Fatal(err)
			}
		}
		check := func(want time.Time) {
			t.Helper()
			got, updated := lastUsed(t, st, key)
			if got == nil || !got.Equal(want) {
				t.Errorf("last_used_at = %v, want %v", got, want)
			}
			if !updated.Equal(updatedBefore) {
				t.Errorf("updated_at moved from %v to %v", updatedBefore, updated)
			}
		}
		s := New(st, quiet())
		send(s, at(10*time.Second, key), at(5*time.Second, key), at(time.Hour, other))
		check(arrival.Add(10 * time.Second))
		send(s, at(0, key)) // older: stays
		check(arrival.Add(10 * time.Second))
		send(s, at(30*time.Second, key)) // within a minute: not worth a write
		check(arrival.Add(10 * time.Second))
		send(s, at(2*time.Minute, key))
		check(arrival.Add(2 * time.Minute))
		// Another replica (no memory of what this one wrote) does not move
		// it back either.
		send(New(st, quiet()), at(time.Minute, key))
		check(arrival.Add(2 * time.Minute))
		if o, _ := lastUsed(t, st, other); o == nil || !o.Equal(arrival.Add(time.Hour)) {
			t.Errorf("other key's last_used_at = %v", o)
		}
	})
}

// serve runs s on a real gRPC server on 127.0.0.1 and returns a client.
func serve(t *testing.T, s *Server) usagev1.UsageIngestServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	s.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return usagev1.NewUsageIngestServiceClient(conn)
}

// Batches sent without waiting are acknowledged in order, each after its
// records are in the store.
func TestIngestAcknowledgesPipelinedBatchesInOrder(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		client := serve(t, New(st, quiet()))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stream, err := client.Ingest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for b := range uint64(5) {
			req := &usagev1.IngestRequest{BatchId: 100 + b}
			for i := range 50 {
				req.Records = append(req.Records, record(i))
			}
			if b == 2 {
				req.Records[0].TenantId = ""
			}
			if err := stream.Send(req); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		stored := 0
		for b := range uint64(5) {
			resp, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetBatchId() != 100+b {
				t.Fatalf("ack for batch %d, want %d", resp.GetBatchId(), 100+b)
			}
			stored += int(resp.GetAccepted())
			if n := countRecords(t, st); n < stored {
				t.Fatalf("batch %d acknowledged with %d records in the store, want at least %d", resp.GetBatchId(), n, stored)
			}
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("after the last ack: %v, want EOF", err)
		}
		if stored != 249 {
			t.Errorf("accepted %d, want 249 (one rejected)", stored)
		}
	})
}

// Several ext_proc replicas resending overlapping batches at once: the
// transactions conflict (on PostgreSQL, SERIALIZABLE), retry, and every
// request is stored exactly once.
func TestConcurrentStreamsWithOverlappingBatches(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		client := serve(t, New(st, quiet()))
		key := createKey(t, st, tenantA)
		var all []*usagev1.UsageRecord
		for i := range 400 {
			r := record(i)
			r.KeyId = key.String()
			all = append(all, r)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for w := range 4 {
			wg.Go(func() {
				stream, err := client.Ingest(ctx)
				if err != nil {
					errs <- err
					return
				}
				// Each replica sends its own quarter and the next one's.
				for b := range 4 {
					lo := (w*100 + b*50) % 400
					req := &usagev1.IngestRequest{BatchId: uint64(b), Records: all[lo : lo+50]}
					if err := stream.Send(req); err != nil {
						errs <- err
						return
					}
					if _, err := stream.Recv(); err != nil {
						errs <- fmt.Errorf("replica %d batch %d: %w", w, b, err)
						return
					}
				}
				errs <- stream.CloseSend()
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := countRecords(t, st); n != 400 {
			t.Errorf("%d rows, want 400", n)
		}
	})
}
