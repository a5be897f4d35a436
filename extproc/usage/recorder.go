// Package usage delivers ext_proc's usage records to the control plane
// without ever making a request wait, and without losing them when the
// control plane is away.
//
// Record puts a record in a bounded in-memory queue and returns. One
// goroutine batches the queue (BatchSize records, or whatever is there every
// FlushInterval) and sends the batches on a UsageIngestService.Ingest stream,
// several at a time, each kept until the control plane acknowledges that it
// is committed. When the control plane is unreachable, when a stream breaks
// with batches unacknowledged, or when the queue fills faster than the
// control plane acknowledges, batches go to append-only segment files in a
// spill directory (fsynced, checksummed). Spilled batches are replayed,
// oldest first, once a stream is up again, and deleted once acknowledged;
// they survive a restart. Delivery is therefore at least once; the control
// plane stores one record per request id, so a batch delivered twice is
// counted once. docs/usage.md describes the guarantees and the file format.
package usage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
)

// Config configures a Recorder. Conn and SpillDir are required; the rest
// have defaults.
type Config struct {
	// Conn reaches the control plane: the connection ext_proc holds for its
	// configuration (the xDS port).
	Conn grpc.ClientConnInterface
	// SpillDir holds the segment files. One directory per process (it is
	// locked); it must survive a restart of the process for spilled records
	// to survive one.
	SpillDir string
	Logger   *slog.Logger

	// QueueSize bounds the records held in memory waiting for a batch
	// (default 10,000). When the control plane falls behind, the queue is
	// moved to the spill before it fills.
	QueueSize int
	// OverflowBytes bounds the records, encoded, that arrive while the
	// queue is full and wait to be written to the spill (default 64 MiB).
	// A record arriving beyond it is dropped, counted and logged: Record
	// never blocks.
	OverflowBytes int
	// BatchSize is the most records per batch (default 500).
	BatchSize int
	// FlushInterval is the longest a record waits for its batch to fill
	// (default 200 ms).
	FlushInterval time.Duration
	// MaxInFlight is the most batches sent and not yet acknowledged
	// (default 4).
	MaxInFlight int
	// AckTimeout is how long a batch may wait for its acknowledgement
	// before the stream is considered broken (default 30 s).
	AckTimeout time.Duration
	// SegmentBytes is the size at which a new spill segment is started
	// (default 16 MiB), and MaxSpillBytes the most the spill may hold
	// (default 1 GiB; negative for no limit). A batch that would exceed it
	// is dropped, counted and logged.
	SegmentBytes  int64
	MaxSpillBytes int64
	// MaxContentBytes bounds the request content (docs/privacy.md) held by
	// queued records (default 64 MiB); content arriving beyond it is
	// dropped and the record marked content_lost.
	MaxContentBytes int
	// RetryMin and RetryMax bound the exponential backoff between attempts
	// to open a stream (defaults 100 ms and 10 s).
	RetryMin, RetryMax time.Duration
}

func (c *Config) setDefaults() error {
	if c.Conn == nil {
		return errors.New("usage: a connection to the control plane is required")
	}
	if c.SpillDir == "" {
		return errors.New("usage: a spill directory is required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.QueueSize, 10_000)
	def(&c.OverflowBytes, 64<<20)
	def(&c.BatchSize, 500)
	def(&c.MaxInFlight, 4)
	def(&c.MaxContentBytes, 64<<20)
	defDur(&c.FlushInterval, 200*time.Millisecond)
	defDur(&c.AckTimeout, 30*time.Second)
	defDur(&c.RetryMin, 100*time.Millisecond)
	defDur(&c.RetryMax, 10*time.Second)
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = 16 << 20
	}
	switch {
	case c.MaxSpillBytes == 0:
		c.MaxSpillBytes = 1 << 30
	case c.MaxSpillBytes < 0:
		c.MaxSpillBytes = 0 // no limit
	}
	if c.QueueSize < c.BatchSize {
		return fmt.Errorf("usage: QueueSize (%d) must be at least BatchSize (%d)", c.QueueSize, c.BatchSize)
	}
	c.RetryMax = max(c.RetryMax, c.RetryMin)
	return nil
}

type atomicInt64 = atomic.Int64

// Recorder queues usage records and delivers them. Its methods are safe for
// concurrent use.
type Recorder struct {
	cfg       Config
	log       *slog.Logger
	client    usagev1.UsageIngestServiceClient
	highWater int

	// Record's side, guarded by mu.
	mu            sync.Mutex
	pending       []*usagev1.UsageRecord
	overflow      []encodedBatch
	overflowN     int // records in overflow
	overflowBytes int
	closed        bool
	queuedContent int // content bytes of the records in pending
	lastDropLog   time.Time
	dropsToLog    int64

	wake    chan struct{}
	events  chan event
	closing chan context.Context
	quit    chan struct{} // closed when the loop has stopped
	ctx     context.Context
	cancel  context.CancelFunc

	closeOnce sync.Once
	closeErr  error

	// Counters, for metrics (issue 9).
	recorded, acked, rejected, dropped, spilled, replayed atomic.Int64
	contentLost                                           atomic.Int64
	spillBytes                                            atomicInt64
	connected                                             atomic.Bool
	inFlight                                              atomic.Int64

	// Owned by the loop goroutine.
	spill      *spill
	inflight   map[uint64]*batch
	nextID     uint64
	stream     *streamState
	gen        int
	connecting bool
	retry      time.Duration
	retryTimer *time.Timer
	retryC     <-chan time.Time
	downSince  time.Time
	lastDown   time.Time
	final      bool // Close is spilling what is left
	// connectStart is when the current connection attempt began.
	connectStart time.Time
	// ackTimeout starts at AckTimeout and grows while the control plane
	// keeps missing it.
	ackTimeout time.Duration
}

// encodedBatch is an encoded IngestRequest holding only records (field 2),
// built record by record, and the number of records in it.
type encodedBatch struct {
	b []byte
	n int
}

// batch is records on their way: in memory only (frame nil), or spilled.
type batch struct {
	records []*usagev1.UsageRecord
	frame   *frame
	sentAt  time.Time
}

type streamState struct {
	gen    int
	cancel context.CancelFunc
	send   chan *usagev1.IngestRequest
}

type eventKind int

const (
	evOpened eventKind = iota
	evOpenFailed
	evAck
	evBroken
)

type event struct {
	kind   eventKind
	gen    int
	stream usagev1.UsageIngestService_IngestClient
	cancel context.CancelFunc
	ack    *usagev1.IngestResponse
	err    error
}

// New opens the spill directory (replaying what a previous process left in
// it) and starts delivering. Call Close to stop.
func New(cfg Config) (*Recorder, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	r := &Recorder{
		cfg:        cfg,
		log:        cfg.Logger,
		client:     usagev1.NewUsageIngestServiceClient(cfg.Conn),
		highWater:  max(cfg.QueueSize/2, cfg.BatchSize),
		wake:       make(chan struct{}, 1),
		events:     make(chan event),
		closing:    make(chan context.Context),
		quit:       make(chan struct{}),
		inflight:   map[uint64]*batch{},
		retry:      cfg.RetryMin,
		ackTimeout: cfg.AckTimeout,
	}
	sp, err := openSpill(cfg.SpillDir, cfg.SegmentBytes, cfg.MaxSpillBytes, r.log, &r.spillBytes)
	if err != nil {
		return nil, err
	}
	r.spill = sp
	r.ctx, r.cancel = context.WithCancel(context.Background())
	go r.run()
	return r, nil
}

// Record queues one request's usage. It never blocks and never fails; the
// Recorder owns rec from here on. A record that can be neither queued nor
// spilled (memory and overflow full, or the Recorder closed) is counted in
// Dropped and logged.
func (r *Recorder) Record(rec *usagev1.UsageRecord) {
	if rec == nil {
		return
	}
	r.recorded.Add(1)
	sanitize(rec)
	r.mu.Lock()
	if r.closed {
		r.dropLocked(1, "the recorder is closed")
		r.mu.Unlock()
		return
	}
	if len(r.pending) < r.cfg.QueueSize {
		if n := contentSize(rec); n > 0 {
			if r.queuedContent+n > r.cfg.MaxContentBytes {
				r.dropContent(rec)
			} else {
				r.queuedContent += n
			}
		}
		r.pending = append(r.pending, rec)
		n := len(r.pending)
		r.mu.Unlock()
		if n >= r.cfg.BatchSize {
			r.signal()
		}
		return
	}
	r.mu.Unlock()
	// The queue is full: the loop is busy writing to disk. Keep the record
	// encoded (about a third of its size in memory) for the spill, which
	// never holds content.
	r.dropContent(rec)
	b, err := proto.Marshal(rec)
	r.mu.Lock()
	switch {
	case r.closed:
		// Close took the overflow while this record was being encoded.
		r.dropLocked(1, "the recorder is closed")
	case err != nil:
		r.dropLocked(1, "encoding failed: "+err.Error())
	case r.overflowBytes+len(b) > r.cfg.OverflowBytes:
		r.dropLocked(1, "the queue and the overflow buffer are full (the spill cannot keep up)")
	default:
		// Batches of BatchSize here too: a huge batch could take the
		// control plane longer to store than AckTimeout, every time.
		if len(r.overflow) == 0 || r.overflow[len(r.overflow)-1].n >= r.cfg.BatchSize {
			r.overflow = append(r.overflow, encodedBatch{})
		}
		last := &r.overflow[len(r.overflow)-1]
		n := len(last.b)
		last.b = protowire.AppendTag(last.b, 2, protowire.BytesType)
		last.b = protowire.AppendBytes(last.b, b)
		last.n++
		r.overflowN++
		r.overflowBytes += len(last.b) - n
	}
	r.mu.Unlock()
	r.signal()
}

func (r *Recorder) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// sanitize replaces invalid UTF-8 in the record's strings. Protobuf refuses
// to encode such a string, and one such record would make its whole batch
// impossible to send or spill.
func sanitize(rec *usagev1.UsageRecord) {
	for _, p := range [...]*string{&rec.RequestId, &rec.TenantId, &rec.KeyId, &rec.Model, &rec.Provider, &rec.UpstreamModel, &rec.ErrorType} {
		if !utf8.ValidString(*p) {
			*p = strings.ToValidUTF8(*p, "\uFFFD")
		}
	}
}

// dropLocked counts lost records and logs them, at most every ten seconds
// with the count since the last line. r.mu is held.
func (r *Recorder) dropLocked(n int, why string) {
	r.dropped.Add(int64(n))
	r.dropsToLog += int64(n)
	if now := time.Now(); now.Sub(r.lastDropLog) >= 10*time.Second {
		r.log.Error("usage records lost", "records", r.dropsToLog, "reason", why, "dropped_total", r.dropped.Load())
		r.lastDropLog, r.dropsToLog = now, 0
	}
}

func (r *Recorder) drop(n int, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropLocked(n, why)
}

// Stats is a snapshot of the Recorder's counters.
type Stats struct {
	Recorded int64 // records given to Record
	Acked    int64 // records the control plane stored (or had stored)
	Rejected int64 // records the control plane refused as invalid (logged)
	Dropped  int64 // records lost: queue and overflow full, spill full or failing, or recorded after Close
	Spilled  int64 // records written to the spill
	Replayed int64 // batches sent again from the spill
	// ContentLost is the records whose request content was dropped (spilled,
	// or over the memory bound for content); their usage is not affected.
	ContentLost int64
	// QueueDepth is the records in memory waiting for a batch.
	QueueDepth int
	// InFlight is the batches sent and not yet acknowledged.
	InFlight int
	// SpillBytes is the size of the spill directory's segments.
	SpillBytes int64
	// Connected reports whether a stream to the control plane is open.
	Connected bool
}

// Stats returns the current counters.
func (r *Recorder) Stats() Stats {
	return Stats{
		Recorded: r.recorded.Load(), Acked: r.acked.Load(), Rejected: r.rejected.Load(),
		Dropped: r.dropped.Load(), Spilled: r.spilled.Load(), Replayed: r.replayed.Load(), ContentLost: r.contentLost.Load(),
		QueueDepth: r.QueueDepth(), InFlight: int(r.inFlight.Load()),
		SpillBytes: r.SpillBytes(), Connected: r.connected.Load(),
	}
}

// QueueDepth is the number of records in memory waiting for a batch.
func (r *Recorder) QueueDepth() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending) + r.overflowN
}

// SpillBytes is the size of the spill segments on disk.
func (r *Recorder) SpillBytes() int64 { return r.spillBytes.Load() }

// Close stops accepting records and delivers what is in memory: to the
// control plane if a stream is up (also replaying the spill while ctx
// allows), otherwise, or once ctx ends, to the spill. It returns when every
// record is acknowledged or spilled, shortly after ctx ends at the latest.
// The error reports records that could be neither. Calling Close again
// waits for the first call and returns its result.
func (r *Recorder) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		r.closing <- ctx
	})
	<-r.quit
	return r.closeErr
}
