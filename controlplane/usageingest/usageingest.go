// Package usageingest receives usage records from ext_proc
// (tollgate.usage.v1.UsageIngestService) and writes them to the store.
//
// Each batch is validated record by record, then written in one transaction
// with INSERT … ON CONFLICT (request_id) DO NOTHING, so that a batch sent
// again (ext_proc resends whatever it has no acknowledgement for) never
// counts a request twice. The same transaction adds the records it
// inserted (RETURNING tells which), and only those, to the hourly and daily
// usage rollups (controlplane/rollup), marks late those of past months whose
// invoice exists already (billed by the tenant's next invoice), and moves
// api_keys.last_used_at forward. The batch is acknowledged only after the commit: an
// acknowledgement means the records are durable.
package usageingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/contentlog"
	"github.com/tollgate-dev/tollgate/controlplane/store"
)

// Server implements UsageIngestService.
type Server struct {
	usagev1.UnimplementedUsageIngestServiceServer
	store *store.Store
	log   *slog.Logger

	// lastUsed remembers the last_used_at this replica last wrote per key,
	// so that a busy key costs one UPDATE a minute rather than one per
	// batch (see lastUsedGranularity).
	mu       sync.Mutex
	lastUsed map[uuid.UUID]time.Time

	// RollupShards is how many rows a hot rollup combination is spread
	// over; each batch adds to one shard picked at random. 1 keeps one row
	// per combination. Set it before serving.
	RollupShards int

	// Tracers, if set, gets a span per batch (trace.go). Set it before
	// serving.
	Tracers trace.TracerProvider

	// content stores the request content records carry; nil discards it.
	content *contentlog.Writer

	metrics *ingestMetrics // nil until Instrument
}

// New returns a Server that writes to st. log may be nil.
func New(st *store.Store, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{store: st, log: log, lastUsed: map[uuid.UUID]time.Time{}, RollupShards: DefaultRollupShards}
}

// KeepContent makes the server store the content that records carry (only
// for tenants whose policy keeps it), in the batch's transaction. Without
// it, content is discarded.
func (s *Server) KeepContent(w *contentlog.Writer) *Server {
	s.content = w
	return s
}

// Register adds the service to g.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	usagev1.RegisterUsageIngestServiceServer(g, s)
}

// Ingest serves one ext_proc's stream: batches are stored and acknowledged
// one after the other, in the order they arrive.
func (s *Server) Ingest(stream usagev1.UsageIngestService_IngestServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := s.Store(ctx, req)
		if err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			s.log.ErrorContext(ctx, "storing a usage batch failed; the sender will resend it",
				"batch_id", req.GetBatchId(), "records", len(req.GetRecords()), "err", err)
			// Ending the stream tells the sender that nothing after its last
			// acknowledgement is stored; it resends from there.
			return status.Errorf(codes.Unavailable, "storing usage batch %d failed; resend it (the error is in the control plane's log)", req.GetBatchId())
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// Store validates and writes one batch, and returns its acknowledgement.
// Invalid records are listed as rejected and the rest are stored; an error
// means nothing of the batch was stored (and it may be sent again).
func (s *Server) Store(ctx context.Context, req *usagev1.IngestRequest) (*usagev1.IngestResponse, error) {
	start := time.Now()
	ctx, batch := s.startBatch(ctx, req)
	resp, err := s.store1(ctx, req)
	s.metrics.batchDone(ctx, start, resp, err)
	batch.end(resp, err)
	return resp, err
}

func (s *Server) store1(ctx context.Context, req *usagev1.IngestRequest) (*usagev1.IngestResponse, error) {
	resp := &usagev1.IngestResponse{BatchId: req.GetBatchId()}
	rows := make([]row, 0, len(req.GetRecords()))
	seen := make(map[string]bool, len(req.GetRecords()))
	for i, r := range req.GetRecords() {
		rw, err := validate(r)
		if err != nil {
			rej := &usagev1.RejectedRecord{Index: int32(i), RequestId: clip(r.GetRequestId()), Reason: reason(err)}
			resp.Rejected = append(resp.Rejected, rej)
			s.log.WarnContext(ctx, "usage record rejected", "batch_id", req.GetBatchId(), "index", i,
				"request_id", rej.RequestId, "tenant_id", clip(r.GetTenantId()), "reason", rej.Reason)
			continue
		}
		resp.Accepted++
		// The same request twice in one batch: the store keeps the first,
		// as it would across batches.
		if seen[rw.requestID] {
			continue
		}
		seen[rw.requestID] = true
		rw.batchIndex = i
		rows = append(rows, rw)
	}
	if len(rows) == 0 {
		return resp, nil
	}
	return s.write(ctx, req, resp, rows)
}

// write stores validated rows in one transaction and completes resp.
func (s *Server) write(ctx context.Context, req *usagev1.IngestRequest, resp *usagev1.IngestResponse, rows []row) (*usagev1.IngestResponse, error) {
	keys := s.keysToTouch(rows)
	shard := s.shard()
	batchOf(ctx).setShard(shard)
	var stored int
	err := s.store.InTx(ctx, func(tx *entTx) error {
		var err error
		if stored, err = storeRows(ctx, tx, s.store.Dialect(), rows, shard, monthOf(time.Now())); err != nil {
			return err
		}
		if err := s.writeContent(ctx, tx, rows); err != nil {
			return err
		}
		return touchKeys(ctx, tx, s.store.Dialect(), keys)
	})
	if isPoison(err) {
		// Validation should have caught whatever the database refuses; if
		// something slipped past it, find the offending records one by
		// one rather than failing this batch on every resend forever.
		return s.storeOneByOne(ctx, req, resp, rows, keys)
	}
	if err != nil {
		return nil, err
	}
	s.metrics.stored(ctx, stored)
	s.rememberKeys(keys)
	return resp, nil
}

// storeOneByOne stores each row in its own transaction and rejects the rows
// the database refuses.
func (s *Server) storeOneByOne(ctx context.Context, req *usagev1.IngestRequest, resp *usagev1.IngestResponse, rows []row, keys map[uuid.UUID]time.Time) (*usagev1.IngestResponse, error) {
	for _, rw := range rows {
		var stored int
		err := s.store.InTx(ctx, func(tx *entTx) error {
			var err error
			stored, err = storeRows(ctx, tx, s.store.Dialect(), []row{rw}, s.shard(), monthOf(time.Now()))
			return err
		})
		if isPoison(err) {
			resp.Accepted--
			rej := &usagev1.RejectedRecord{Index: int32(rw.batchIndex), RequestId: rw.requestID, Reason: "the store refused it: " + clip(err.Error())}
			resp.Rejected = append(resp.Rejected, rej)
			s.log.ErrorContext(ctx, "usage record refused by the store", "batch_id", req.GetBatchId(), "index", rw.batchIndex, "request_id", rw.requestID, "err", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		s.metrics.stored(ctx, stored)
	}
	if err := s.store.InTx(ctx, func(tx *entTx) error { return touchKeys(ctx, tx, s.store.Dialect(), keys) }); err != nil {
		return nil, fmt.Errorf("updating keys' last use: %w", err)
	}
	s.rememberKeys(keys)
	return resp, nil
}

// storeRows inserts the rows not stored yet, adds them, and only them, to
// the rollups, and marks late those of months before thisMonth that their
// tenant's invoice was made without, in tx, and returns how many it
// inserted. It may run more than once (retries) and leaves rows as they are.
func storeRows(ctx context.Context, tx *entTx, d store.Dialect, rows []row, shard int32, thisMonth time.Time) (int, error) {
	fresh, err := insertRows(ctx, tx, d, rows)
	if err != nil || len(fresh) == 0 {
		return 0, err
	}
	if err := addRollups(ctx, tx, fresh, shard); err != nil {
		return 0, err
	}
	return len(fresh), markLate(ctx, tx, fresh, thisMonth)
}

func (s *Server) shard() int32 {
	if s.RollupShards <= 1 {
		return 0
	}
	return int32(rand.N(s.RollupShards))
}

// writeContent stores the content of the rows that carry any. Content is
// stored with its usage record or not at all: a batch stored record by
// record (storeOneByOne) keeps the usage and drops the content.
func (s *Server) writeContent(ctx context.Context, tx *entTx, rows []row) error {
	if s.content == nil {
		return nil
	}
	var recs []contentlog.Record
	for _, rw := range rows {
		if c := rw.rec.GetContent(); c != nil {
			recs = append(recs, contentlog.Record{RequestID: rw.requestID, TenantID: rw.tenantID, KeyID: rw.keyID, Time: rw.time, Content: c})
		}
	}
	return s.content.Write(ctx, tx, recs)
}

// lastUsedGranularity is how far behind a key's last_used_at may lag. Every
// write of a key's row under SERIALIZABLE conflicts with every concurrent
// write of it (other replicas, other batches, the admin API), so a key that
// serves thousands of requests a second must not be written for each batch.
const lastUsedGranularity = time.Minute

// keysToTouch returns, per key, the latest use in rows, for the keys whose
// last_used_at this replica has not moved within lastUsedGranularity.
func (s *Server) keysToTouch(rows []row) map[uuid.UUID]time.Time {
	latest := map[uuid.UUID]time.Time{}
	for _, rw := range rows {
		if rw.keyID != nil && rw.time.After(latest[*rw.keyID]) {
			latest[*rw.keyID] = rw.time
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range latest {
		if prev, ok := s.lastUsed[id]; ok && t.Before(prev.Add(lastUsedGranularity)) {
			delete(latest, id)
		}
	}
	return latest
}

// maxRememberedKeys bounds the lastUsed cache; past it the cache starts
// over, which costs one UPDATE per key and nothing else.
const maxRememberedKeys = 100_000

func (s *Server) rememberKeys(keys map[uuid.UUID]time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lastUsed)+len(keys) > maxRememberedKeys {
		s.lastUsed = map[uuid.UUID]time.Time{}
	}
	for id, t := range keys {
		if t.After(s.lastUsed[id]) {
			s.lastUsed[id] = t
		}
	}
}
