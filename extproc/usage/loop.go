package usage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
)

// run is the loop that owns batching, the stream and the spill.
func (r *Recorder) run() {
	defer close(r.quit)
	tick := time.NewTicker(r.cfg.FlushInterval)
	defer tick.Stop()
	ackTick := time.NewTicker(max(r.cfg.AckTimeout/4, time.Millisecond))
	defer ackTick.Stop()
	r.connect()
	for {
		select {
		case <-r.wake:
			r.collect(false)
		case <-tick.C:
			r.collect(true)
		case <-ackTick.C:
			r.checkAcks()
		case ev := <-r.events:
			r.handle(ev)
		case <-r.retryC:
			r.retryC = nil
			r.connect()
		case ctx := <-r.closing:
			r.shutdown(ctx)
			return
		}
		r.replay()
	}
}

// collect moves queued records on: to the stream as far as its window
// allows, to the spill when no stream is up or the queue passes its high
// water mark. With flush, a partial batch goes too; otherwise only full
// ones do, and the rest waits for the next tick.
func (r *Recorder) collect(flush bool) {
	r.mu.Lock()
	overflow := r.overflow
	r.overflow, r.overflowN, r.overflowBytes = nil, 0, 0
	n := len(r.pending)
	var toSend, toSpill []*usagev1.UsageRecord
	if r.stream == nil {
		// Spill once the control plane is known to be away, not while the
		// first stream is being opened (unless the queue is filling up).
		away := !r.downSince.IsZero() || r.final || n >= r.highWater ||
			(r.connecting && time.Since(r.connectStart) > max(r.cfg.FlushInterval, time.Second)) // an attempt that hangs
		k := n
		if !flush {
			k -= k % r.cfg.BatchSize
		}
		if away && k > 0 {
			toSpill = r.pending[:k]
			r.pending = slices.Clone(r.pending[k:])
		}
	} else {
		k := min(n, max(r.cfg.MaxInFlight-len(r.inflight), 0)*r.cfg.BatchSize)
		if !flush {
			k -= k % r.cfg.BatchSize
		}
		toSend = r.pending[:k]
		if n-k >= r.highWater {
			toSpill = r.pending[k:]
			r.pending = nil
		} else {
			r.pending = slices.Clone(r.pending[k:])
		}
	}
	if r.queuedContent > 0 {
		r.queuedContent = queuedContent(r.pending)
	}
	r.mu.Unlock()

	for _, b := range overflow {
		r.spillPayload(b.b, b.n)
	}
	for b := range slices.Chunk(toSend, r.cfg.BatchSize) {
		r.send(&batch{records: b})
	}
	for b := range slices.Chunk(toSpill, r.cfg.BatchSize) {
		r.spillRecords(b)
	}
}

// spillRecords writes records to the spill as one batch.
func (r *Recorder) spillRecords(recs []*usagev1.UsageRecord) *frame {
	payload, err := proto.Marshal(&usagev1.IngestRequest{Records: r.withoutContent(recs)})
	if err != nil {
		r.drop(len(recs), "encoding a batch for the spill failed: "+err.Error())
		return nil
	}
	return r.spillPayload(payload, len(recs))
}

func (r *Recorder) spillPayload(payload []byte, n int) *frame {
	fr, err := r.spill.append(payload)
	if err != nil {
		r.drop(n, fmt.Sprintf("cannot spill to %s: %v", r.cfg.SpillDir, err))
		return nil
	}
	r.spilled.Add(int64(n))
	return fr
}

// send puts a batch on the stream. The caller checked the window.
func (r *Recorder) send(b *batch) {
	r.nextID++
	id := r.nextID
	b.sentAt = time.Now()
	r.inflight[id] = b
	r.inFlight.Store(int64(len(r.inflight)))
	if b.frame != nil {
		r.spill.sent(b.frame)
	} else {
		r.limitBatchContent(b.records)
	}
	// Never blocks: the channel holds MaxInFlight and so does the window.
	r.stream.send <- &usagev1.IngestRequest{BatchId: id, Records: b.records}
}

// replay sends spilled batches, oldest first, while the window has room.
// One slot is left to live traffic, and none is taken while a full batch of
// it waits.
func (r *Recorder) replay() {
	for r.stream != nil && len(r.inflight) < max(r.cfg.MaxInFlight-1, 1) && !r.liveWaiting() {
		fr := r.spill.next()
		if fr == nil {
			return
		}
		payload, err := r.spill.read(fr)
		var req usagev1.IngestRequest
		if err == nil {
			err = proto.Unmarshal(payload, &req)
		}
		if err != nil {
			r.log.Error("usage spill: a spilled batch cannot be read; its records are lost", "err", err)
			r.dropped.Add(1) // at least one record; the count is unknown
			r.spill.acked(fr)
			continue
		}
		r.replayed.Add(1)
		r.send(&batch{records: req.Records, frame: fr})
	}
}

func (r *Recorder) liveWaiting() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending) >= r.cfg.BatchSize || r.overflowN > 0
}

// connect opens a stream in the background.
func (r *Recorder) connect() {
	if r.connecting || r.stream != nil {
		return
	}
	r.connecting = true
	r.connectStart = time.Now()
	r.gen++
	gen := r.gen
	go func() {
		ctx, cancel := context.WithCancel(r.ctx)
		st, err := r.client.Ingest(ctx)
		ev := event{kind: evOpened, gen: gen, stream: st, cancel: cancel}
		if err != nil {
			cancel()
			ev = event{kind: evOpenFailed, gen: gen, err: err}
		}
		r.deliver(ev)
	}()
}

// deliver hands an event from a stream goroutine to the loop, or gives up
// once the loop has stopped.
func (r *Recorder) deliver(ev event) bool {
	select {
	case r.events <- ev:
		return true
	case <-r.quit:
		if ev.cancel != nil {
			ev.cancel()
		}
		return false
	}
}

func (r *Recorder) handle(ev event) {
	switch ev.kind {
	case evOpened:
		r.connecting = false
		if ev.gen != r.gen {
			ev.cancel()
			return
		}
		st := &streamState{gen: ev.gen, cancel: ev.cancel, send: make(chan *usagev1.IngestRequest, r.cfg.MaxInFlight)}
		r.stream = st
		r.connected.Store(true)
		go r.sendLoop(st, ev.stream)
		go r.recvLoop(st, ev.stream)
		if !r.downSince.IsZero() {
			r.log.Info("usage: control plane reachable again; replaying the spill",
				"down_for", time.Since(r.downSince).Round(time.Millisecond).String(), "spill_bytes", r.spillBytes.Load())
			r.downSince = time.Time{}
		}
		r.collect(false)
	case evOpenFailed:
		r.connecting = false
		if ev.gen == r.gen {
			r.down(ev.err)
		}
	case evAck:
		if r.stream == nil || ev.gen != r.stream.gen {
			return
		}
		r.acknowledged(ev.ack)
		r.collect(false)
	case evBroken:
		if r.stream != nil && ev.gen == r.stream.gen {
			r.down(ev.err)
		}
	}
}

func (r *Recorder) acknowledged(ack *usagev1.IngestResponse) {
	b, ok := r.inflight[ack.GetBatchId()]
	if !ok {
		r.log.Warn("usage: acknowledgement for a batch not in flight; ignored", "batch_id", ack.GetBatchId())
		return
	}
	delete(r.inflight, ack.GetBatchId())
	r.inFlight.Store(int64(len(r.inflight)))
	r.retry, r.ackTimeout = r.cfg.RetryMin, r.cfg.AckTimeout
	r.acked.Add(int64(ack.GetAccepted()))
	for _, rej := range ack.GetRejected() {
		r.rejected.Add(1)
		attrs := []any{"request_id", rej.GetRequestId(), "reason", rej.GetReason()}
		if i := int(rej.GetIndex()); i >= 0 && i < len(b.records) {
			// The whole record, so that it can be corrected and entered by
			// hand: it holds no secret and no content.
			attrs = append(attrs, "record", protojson.MarshalOptions{}.Format(b.records[i]))
		}
		r.log.Error("usage record rejected by the control plane; not stored", attrs...)
	}
	if b.frame != nil {
		r.spill.acked(b.frame)
	}
}

// down handles a stream that broke or could not be opened: unacknowledged
// batches go (back) to the spill, and a new stream is tried after a backoff.
func (r *Recorder) down(err error) {
	now := time.Now()
	spilled := 0
	if st := r.stream; st != nil {
		st.cancel()
		r.stream = nil
		r.connected.Store(false)
		ids := make([]uint64, 0, len(r.inflight))
		for id := range r.inflight {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			b := r.inflight[id]
			if b.frame != nil {
				r.spill.unsent(b.frame)
			} else {
				r.spillRecords(b.records)
				spilled++
			}
		}
		clear(r.inflight)
		r.inFlight.Store(0)
	}
	switch {
	case r.downSince.IsZero():
		r.downSince, r.lastDown = now, now
		msg := "usage: control plane unreachable; spilling records until it is back"
		if status.Code(err) == codes.Unimplemented {
			msg = "usage: the control plane does not accept usage (older than this ext_proc?); spilling records until it does"
		}
		r.log.Warn(msg, "err", err, "batches_spilled", spilled, "spill_dir", r.cfg.SpillDir)
	case now.Sub(r.lastDown) >= time.Minute:
		r.lastDown = now
		r.log.Warn("usage: control plane still unreachable", "err", err,
			"down_for", now.Sub(r.downSince).Round(time.Second).String(), "spill_bytes", r.spillBytes.Load())
	default:
		r.log.Debug("usage: stream to the control plane failed", "err", err)
	}
	// Full jitter keeps a fleet of ext_procs from reconnecting in step
	// after a control plane restart.
	wait := r.retry/2 + rand.N(r.retry/2+1)
	r.retry = min(r.retry*2, r.cfg.RetryMax)
	if r.retryTimer == nil {
		r.retryTimer = time.NewTimer(wait)
	} else {
		r.retryTimer.Reset(wait)
	}
	r.retryC = r.retryTimer.C
	// Full batches waiting for this stream go to the spill now.
	r.collect(false)
}

// checkAcks breaks a stream on which the oldest batch has waited longer
// than AckTimeout: a control plane that accepts batches and never answers
// must not hold them forever.
func (r *Recorder) checkAcks() {
	if r.stream == nil {
		return
	}
	for _, b := range r.inflight {
		if time.Since(b.sentAt) > r.ackTimeout {
			err := fmt.Errorf("no acknowledgement within %s", r.ackTimeout)
			// A control plane that is merely slow (a struggling database)
			// gets longer next time, so that the same batches are not
			// abandoned and resent forever.
			r.ackTimeout = min(2*r.ackTimeout, 10*r.cfg.AckTimeout)
			r.down(err)
			return
		}
	}
}

func (r *Recorder) sendLoop(st *streamState, stream usagev1.UsageIngestService_IngestClient) {
	for {
		select {
		case req := <-st.send:
			if err := stream.Send(req); err != nil {
				// The real error comes from Recv.
				if errors.Is(err, io.EOF) {
					return
				}
				r.deliver(event{kind: evBroken, gen: st.gen, err: err})
				return
			}
		case <-stream.Context().Done():
			return
		}
	}
}

func (r *Recorder) recvLoop(st *streamState, stream usagev1.UsageIngestService_IngestClient) {
	for {
		ack, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the control plane closed the stream")
			}
			r.deliver(event{kind: evBroken, gen: st.gen, err: err})
			return
		}
		if !r.deliver(event{kind: evAck, gen: st.gen, ack: ack}) {
			return
		}
	}
}

// shutdown runs Close: deliver what is in memory, then replay the spill
// while ctx allows, then spill whatever is left and release everything.
func (r *Recorder) shutdown(ctx context.Context) {
	droppedBefore := r.dropped.Load()
	tick := time.NewTicker(max(min(r.cfg.FlushInterval, r.cfg.AckTimeout/4), time.Millisecond))
	defer tick.Stop()
wait:
	for {
		r.collect(true)
		r.replay()
		memory := r.QueueDepth() > 0
		for _, b := range r.inflight {
			memory = memory || b.frame == nil
		}
		switch {
		case r.stream == nil && r.connecting:
			// Wait for the attempt under way: it may deliver everything.
		case r.stream == nil:
			break wait // down: what is in memory goes to the spill below
		case !memory && len(r.inflight) == 0 && !r.spill.pending():
			break wait // all delivered
		}
		select {
		case ev := <-r.events:
			r.handle(ev)
		case <-tick.C:
			r.checkAcks()
		case <-ctx.Done():
			break wait
		}
	}
	// What is still in memory goes to the spill.
	if r.stream != nil {
		r.stream.cancel()
		r.stream = nil
		r.connected.Store(false)
	}
	for _, b := range r.inflight {
		if b.frame == nil {
			r.spillRecords(b.records)
		}
	}
	clear(r.inflight)
	r.inFlight.Store(0)
	r.final = true
	r.collect(true) // no stream: everything queued goes to the spill
	r.cancel()
	if r.retryTimer != nil {
		r.retryTimer.Stop()
	}
	if err := r.spill.close(); err != nil {
		r.log.Error("usage spill: releasing the directory", "err", err)
	}
	if lost := r.dropped.Load() - droppedBefore; lost > 0 {
		r.closeErr = fmt.Errorf("usage: %d records could be neither delivered nor spilled (see the log)", lost)
	}
	if left := r.spillBytes.Load(); left > 0 {
		r.log.Warn("usage: records left in the spill directory; they are replayed when ext_proc starts again",
			"spill_dir", r.cfg.SpillDir, "spill_bytes", left)
	}
}
