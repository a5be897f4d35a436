package usage

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
	"github.com/tollgate-dev/tollgate/controlplane/usageingest"
)

// controlPlane serves the real usageingest service on a fixed 127.0.0.1
// address, can be stopped and started again there, and can be told to
// misbehave.
type controlPlane struct {
	usagev1.UnimplementedUsageIngestServiceServer
	t      *testing.T
	addr   string
	store  *store.Store
	ingest *usageingest.Server

	mu       sync.Mutex
	g        *grpc.Server
	hang     bool // receive batches, store nothing, answer nothing
	holdAcks bool // store batches, answer nothing
	received int  // records received, duplicates included
}

// newControlPlane reserves an address; the control plane is down until
// start.
func newControlPlane(t *testing.T, st *store.Store) *controlPlane {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{t: t, addr: addr, store: st, ingest: usageingest.New(st, slog.New(slog.DiscardHandler))}
	t.Cleanup(cp.stop)
	return cp
}

func (cp *controlPlane) start() {
	cp.t.Helper()
	var lis net.Listener
	var err error
	// The port was just released by the previous server; the kernel may
	// take a moment to let it go.
	for range 50 {
		if lis, err = net.Listen("tcp", cp.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		cp.t.Fatal(err)
	}
	g := grpc.NewServer()
	usagev1.RegisterUsageIngestServiceServer(g, cp)
	cp.mu.Lock()
	cp.g = g
	cp.mu.Unlock()
	go func() { _ = g.Serve(lis) }()
}

func (cp *controlPlane) stop() {
	cp.mu.Lock()
	g := cp.g
	cp.g = nil
	cp.mu.Unlock()
	if g != nil {
		g.Stop()
	}
}

func (cp *controlPlane) set(f func(cp *controlPlane)) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	f(cp)
}

func (cp *controlPlane) receivedRecords() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.received
}

func (cp *controlPlane) Ingest(stream usagev1.UsageIngestService_IngestServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		cp.mu.Lock()
		cp.received += len(req.GetRecords())
		hang, hold := cp.hang, cp.holdAcks
		cp.mu.Unlock()
		if hang {
			continue
		}
		resp, err := cp.ingest.Store(stream.Context(), req)
		if err != nil {
			return err
		}
		if hold {
			continue
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (cp *controlPlane) stored() int {
	cp.t.Helper()
	n, err := cp.store.Client().UsageRecord.Query().Count(context.Background())
	if err != nil {
		cp.t.Fatal(err)
	}
	return n
}

// dial returns a client connection to addr that reconnects quickly.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, MaxDelay: 100 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// testConfig is a Config with short intervals, so that the tests run in
// well under a second each.
func testConfig(conn grpc.ClientConnInterface, dir string) Config {
	return Config{
		Conn: conn, SpillDir: dir,
		BatchSize: 100, QueueSize: 1000, MaxInFlight: 4,
		FlushInterval: 10 * time.Millisecond, AckTimeout: 2 * time.Second,
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
	}
}

func newRecorder(t *testing.T, cfg Config) (*Recorder, *logBuffer) {
	t.Helper()
	log, buf := newLog()
	cfg.Logger = log
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.Close(ctx)
	})
	return r, buf
}

var tenantID = uuid.MustParse("0b000000-0000-4000-8000-00000000000b").String()

func rec(i int) *usagev1.UsageRecord {
	return &usagev1.UsageRecord{
		RequestId: uuid.NewString(), TenantId: tenantID, Model: "gpt-4o-mini", Provider: "openai",
		InputTokens: int64(i), OutputTokens: 1, CostMicros: 3, StatusCode: 200,
		Time: timestamppb.New(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)),
	}
}

func recordN(r *Recorder, n int) {
	for i := range n {
		r.Record(rec(i))
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, segmentPrefix+"*"+segmentSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func closeRecorder(t *testing.T, r *Recorder, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// The common case: records from many goroutines reach the store once each,
// and nothing touches the disk.
func TestRecordsReachTheStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		cp := newControlPlane(t, st)
		cp.start()
		dir := t.TempDir()
		cfg := testConfig(dial(t, cp.addr), dir)
		cfg.QueueSize = 10_000 // room for the whole burst: no reason to spill
		r, _ := newRecorder(t, cfg)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() { recordN(r, 587) })
		}
		wg.Wait()
		closeRecorder(t, r, 10*time.Second)
		if n := cp.stored(); n != 4*587 {
			t.Errorf("%d records stored, want %d", n, 4*587)
		}
		s := r.Stats()
		if s.Recorded != 4*587 || s.Acked != 4*587 || s.Spilled != 0 || s.Dropped != 0 || s.SpillBytes != 0 {
			t.Errorf("stats %+v", s)
		}
		if segs := segments(t, dir); len(segs) != 0 {
			t.Errorf("segments left: %v", segs)
		}
	})
}

// The control plane is down when ext_proc starts: records go to the spill,
// and reach the store once it comes up.
func TestControlPlaneDownAtStart(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		cp := newControlPlane(t, st)
		dir := t.TempDir()
		r, logs := newRecorder(t, testConfig(dial(t, cp.addr), dir))
		recordN(r, 1000)
		waitFor(t, "every record is spilled", func() bool { return r.Stats().Spilled == 1000 })
		if r.QueueDepth() != 0 || r.SpillBytes() == 0 || len(segments(t, dir)) == 0 {
			t.Fatalf("after spilling: %+v, segments %v", r.Stats(), segments(t, dir))
		}
		// Records can reach the spill (the queue passed its high-water
		// mark) before the first connection attempt has failed and been
		// logged: wait for the line rather than expect it already.
		waitFor(t, "a log line says the control plane is unreachable", func() bool {
			return strings.Contains(logs.String(), "control plane unreachable")
		})
		cp.start()
		waitFor(t, "the spill is replayed into the store", func() bool { return cp.stored() == 1000 })
		waitFor(t, "the spill is empty", func() bool { return r.SpillBytes() == 0 && len(segments(t, dir)) == 0 })
		if !strings.Contains(logs.String(), "control plane reachable again") {
			t.Errorf("no log line says the control plane is back:\n%s", logs)
		}
		closeRecorder(t, r, 10*time.Second)
		if s := r.Stats(); s.Acked != 1000 || s.Dropped != 0 || s.Replayed == 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

// The control plane stores batches and goes down before acknowledging them:
// ext_proc sends them again, and the store still counts each request once.
func TestControlPlaneGoesDownMidStream(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		cp := newControlPlane(t, st)
		cp.set(func(cp *controlPlane) { cp.holdAcks = true })
		cp.start()
		dir := t.TempDir()
		r, _ := newRecorder(t, testConfig(dial(t, cp.addr), dir))
		recordN(r, 1000)
		waitFor(t, "batches are stored and unacknowledged", func() bool { return cp.stored() >= 300 })
		cp.stop()
		unacked := cp.stored()
		cp.set(func(cp *controlPlane) { cp.holdAcks = false })
		waitFor(t, "the unacknowledged batches are spilled", func() bool { return r.Stats().Spilled >= int64(unacked) && !r.Stats().Connected })
		cp.start()
		waitFor(t, "all records are stored", func() bool { return cp.stored() == 1000 })
		waitFor(t, "the spill is empty", func() bool { return r.SpillBytes() == 0 })
		closeRecorder(t, r, 10*time.Second)
		if n := cp.stored(); n != 1000 {
			t.Errorf("%d records stored, want 1000", n)
		}
		if got := cp.receivedRecords(); got < 1000+unacked {
			t.Errorf("the control plane received %d records; want the %d unacknowledged ones twice (>= %d)", got, unacked, 1000+unacked)
		}
		if s := r.Stats(); s.Acked != 1000 || s.Dropped != 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

// A burst far larger than the queue, while the control plane accepts
// batches and never answers: Record never blocks, the excess goes to the
// spill, and nothing is lost once the control plane recovers.
func TestQueueOverflowUnderABurst(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		cp := newControlPlane(t, st)
		cp.set(func(cp *controlPlane) { cp.hang = true })
		cp.start()
		dir := t.TempDir()
		cfg := testConfig(dial(t, cp.addr), dir)
		cfg.QueueSize, cfg.BatchSize, cfg.MaxInFlight, cfg.AckTimeout = 200, 50, 2, 300*time.Millisecond
		r, _ := newRecorder(t, cfg)
		waitFor(t, "the stream is up", func() bool { return r.Stats().Connected })
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { recordN(r, 1000) })
		}
		wg.Wait()
		s := r.Stats()
		if s.Dropped != 0 {
			t.Fatalf("dropped %d records in the burst", s.Dropped)
		}
		waitFor(t, "the queue is on disk", func() bool { return r.QueueDepth() == 0 && r.Stats().Spilled > 0 })
		cp.set(func(cp *controlPlane) { cp.hang = false })
		waitFor(t, "all records are stored", func() bool { return cp.stored() == 8000 })
		waitFor(t, "the spill is empty", func() bool { return r.SpillBytes() == 0 })
		closeRecorder(t, r, 10*time.Second)
		if s := r.Stats(); s.Acked != 8000 || s.Dropped != 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

// Records spilled by one process are delivered by the next one.
func TestRestartReplaysTheSpill(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		cp := newControlPlane(t, st)
		dir := t.TempDir()
		conn := dial(t, cp.addr)
		first, _ := newRecorder(t, testConfig(conn, dir))
		recordN(first, 700)
		closeRecorder(t, first, 5*time.Second) // the control plane is down: all to the spill
		if s := first.Stats(); s.Spilled != 700 || s.Dropped != 0 {
			t.Fatalf("first process: %+v", s)
		}
		if len(segments(t, dir)) == 0 {
			t.Fatal("no spill segment after closing with the control plane down")
		}
		cp.start()
		second, logs := newRecorder(t, testConfig(conn, dir))
		if second.SpillBytes() == 0 {
			t.Error("the second process does not count the spill it found")
		}
		waitFor(t, "the spill is replayed", func() bool { return cp.stored() == 700 })
		waitFor(t, "the spill is empty", func() bool { return len(segments(t, dir)) == 0 })
		closeRecorder(t, second, 5*time.Second)
		if !strings.Contains(logs.String(), "found records to replay") {
			t.Errorf("no log line about the spill found at start:\n%s", logs)
		}
	})
}

// A crash tore the last frame of a segment: the intact batches are
// replayed, the torn one is reported, and nothing panics.
func TestTornSpillTailIsSkippedOnRestart(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		cp := newControlPlane(t, st)
		dir := t.TempDir()
		conn := dial(t, cp.addr)
		cfg := testConfig(conn, dir)
		cfg.FlushInterval = time.Hour // batches form by size only: three frames of 100
		first, _ := newRecorder(t, cfg)
		recordN(first, 300)
		waitFor(t, "three batches are spilled", func() bool { return first.Stats().Spilled == 300 })
		closeRecorder(t, first, 5*time.Second)
		segs := segments(t, dir)
		if len(segs) != 1 {
			t.Fatalf("segments %v, want one", segs)
		}
		info, err := os.Stat(segs[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(segs[0], info.Size()-10); err != nil {
			t.Fatal(err)
		}
		cp.start()
		second, logs := newRecorder(t, testConfig(conn, dir))
		waitFor(t, "the intact batches are stored", func() bool { return cp.stored() == 200 })
		waitFor(t, "the spill is empty", func() bool { return len(segments(t, dir)) == 0 })
		closeRecorder(t, second, 5*time.Second)
		if n := cp.stored(); n != 200 {
			t.Errorf("%d stored, want the 200 of the two intact batches", n)
		}
		if !strings.Contains(logs.String(), "torn tail skipped") {
			t.Errorf("no log line about the torn tail:\n%s", logs)
		}
	})
}

// Close delivers the queue, the partial batch included, before it returns.
func TestCloseFlushesToTheControlPlane(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		cp := newControlPlane(t, st)
		cp.start()
		dir := t.TempDir()
		cfg := testConfig(dial(t, cp.addr), dir)
		cfg.FlushInterval = time.Hour // only Close sends the partial batch
		r, _ := newRecorder(t, cfg)
		waitFor(t, "the stream is up", func() bool { return r.Stats().Connected })
		recordN(r, 250)
		closeRecorder(t, r, 10*time.Second)
		if n := cp.stored(); n != 250 {
			t.Errorf("%d stored when Close returned, want 250", n)
		}
		if len(segments(t, dir)) != 0 {
			t.Error("Close spilled although the control plane answered")
		}
	})
}

// A control plane that never answers cannot hold Close past its deadline:
// what it did not acknowledge is spilled, and delivered by the next process.
func TestCloseSpillsWhatIsNotAcknowledgedInTime(t *testing.T) {
	storetest.Run(t, func(t *testing.T, st *store.Store) {
		cp := newControlPlane(t, st)
		cp.set(func(cp *controlPlane) { cp.hang = true })
		cp.start()
		dir := t.TempDir()
		conn := dial(t, cp.addr)
		cfg := testConfig(conn, dir)
		cfg.AckTimeout = time.Minute
		r, _ := newRecorder(t, cfg)
		waitFor(t, "the stream is up", func() bool { return r.Stats().Connected })
		recordN(r, 250)
		start := time.Now()
		closeRecorder(t, r, 300*time.Millisecond)
		// Waiting for the acknowledgement would take the minute of
		// AckTimeout; the bound is far from that and far above 300ms, so
		// that a slow machine cannot fail it.
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("Close took %v with a 300ms deadline: it waited for the acknowledgement", d)
		}
		if s := r.Stats(); s.Spilled != 250 || s.Dropped != 0 {
			t.Fatalf("stats after Close: %+v", s)
		}
		cp.set(func(cp *controlPlane) { cp.hang = false })
		next, _ := newRecorder(t, testConfig(conn, dir))
		waitFor(t, "the next process delivers the spill", func() bool { return cp.stored() == 250 })
		closeRecorder(t, next, 5*time.Second)
	})
}

// A record the control plane refuses is logged whole, counted, and not sent
// again; the rest of its batch is stored. Invalid UTF-8 is repaired rather
// than poisoning the batch.
func TestRejectedRecordsAreLoggedNotResent(t *testing.T) {
	cp := newControlPlane(t, storetest.SQLite(t))
	cp.start()
	dir := t.TempDir()
	r, logs := newRecorder(t, testConfig(dial(t, cp.addr), dir))
	bad := rec(1)
	bad.TenantId = "acme"
	odd := rec(2)
	odd.Model = "gpt\xff"
	r.Record(rec(0))
	r.Record(bad)
	r.Record(odd)
	closeRecorder(t, r, 5*time.Second)
	if n := cp.stored(); n != 2 {
		t.Errorf("%d stored, want 2", n)
	}
	if s := r.Stats(); s.Rejected != 1 || s.Acked != 2 {
		t.Errorf("stats %+v", s)
	}
	out := logs.String()
	for _, want := range []string{"usage record rejected by the control plane", bad.GetRequestId(), "tenant_id: must be a UUID", `tenantId`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	m, err := cp.store.Client().UsageRecord.Query().All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range m {
		if u.RequestID == odd.GetRequestId() && u.Model != "gpt\uFFFD" {
			t.Errorf("model stored as %q", u.Model)
		}
	}
	if len(segments(t, dir)) != 0 {
		t.Error("a rejected record was spilled")
	}
}

func TestRecordAfterCloseIsCounted(t *testing.T) {
	cp := newControlPlane(t, storetest.SQLite(t))
	r, logs := newRecorder(t, testConfig(dial(t, cp.addr), t.TempDir()))
	closeRecorder(t, r, time.Second)
	r.Record(rec(0))
	if s := r.Stats(); s.Dropped != 1 {
		t.Errorf("stats %+v, want one dropped", s)
	}
	if !strings.Contains(logs.String(), "the recorder is closed") {
		t.Errorf("no log line for the dropped record:\n%s", logs)
	}
}

// A control plane from before usage ingestion answers Unimplemented: the
// records wait in the spill and the log says why.
func TestControlPlaneWithoutIngestion(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	r, logs := newRecorder(t, testConfig(dial(t, lis.Addr().String()), t.TempDir()))
	recordN(r, 10)
	waitFor(t, "the records are spilled", func() bool { return r.Stats().Spilled == 10 })
	if !strings.Contains(logs.String(), "does not accept usage") {
		t.Errorf("log does not explain the refusal:\n%s", logs)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	conn := dial(t, "127.0.0.1:1")
	for name, cfg := range map[string]Config{
		"no conn":             {SpillDir: t.TempDir()},
		"no spill dir":        {Conn: conn},
		"queue below a batch": {Conn: conn, SpillDir: t.TempDir(), QueueSize: 10, BatchSize: 20},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	dir := t.TempDir()
	newRecorder(t, testConfig(conn, dir))
	if _, err := New(testConfig(conn, dir)); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("a second recorder on one spill directory: %v", err)
	}
}

// BenchmarkRecord measures the hot path: Record from many goroutines while
// the recorder batches and spills (no control plane, so the spill takes
// everything). A tight loop records far faster than a disk can absorb, so
// drops are reported as a metric rather than failed on.
func BenchmarkRecord(b *testing.B) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	r, err := New(Config{Conn: conn, SpillDir: b.TempDir(), Logger: slog.New(slog.DiscardHandler), MaxSpillBytes: -1})
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]*usagev1.UsageRecord, 4096)
	for i := range recs {
		recs[i] = rec(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Record(recs[i%len(recs)])
			i++
		}
	})
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		b.Log(err)
	}
	s := r.Stats()
	b.ReportMetric(float64(s.Dropped)/float64(s.Recorded), "dropped/op")
}
