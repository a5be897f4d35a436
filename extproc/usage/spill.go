package usage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Spill segment format (docs/usage.md):
//
//	segment = fileMagic frame*
//	frame   = frameMagic len:uint32le crc:uint32le payload[len]
//
// payload is an encoded tollgate.usage.v1.IngestRequest (records only, no
// batch id); crc is CRC-32C over the four length bytes and the payload. A
// frame is written with one write and fsynced before the batch counts as
// spilled, so a crash can only leave a torn last frame. A reader that meets
// a bad frame looks for the next good one (frameMagic, a length that fits,
// a matching CRC), so damage in the middle of a file costs only the frames
// it touches.
var (
	fileMagic  = []byte("TGUSAGE1")
	frameMagic = []byte{0xF7, 'T', 'G', 'U'}
)

const (
	frameHeader = 12
	// maxFrame bounds a frame's payload; a larger length field is damage.
	maxFrame = 64 << 20
	// segmentPrefix and segmentSuffix name segment files: usage-<seq>.spill,
	// seq in 16 hex digits so that names sort oldest first.
	segmentPrefix = "usage-"
	segmentSuffix = ".spill"
	lockName      = "LOCK"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func frameCRC(lenBytes, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(lenBytes, castagnoli), castagnoli, payload)
}

// encodeFrame returns payload framed for a segment.
func encodeFrame(payload []byte) []byte {
	b := make([]byte, frameHeader+len(payload))
	copy(b, frameMagic)
	binary.LittleEndian.PutUint32(b[4:8], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[8:12], frameCRC(b[4:8], payload))
	copy(b[frameHeader:], payload)
	return b
}

// frameAt reports whether a whole, intact frame starts at data[off:], and
// its payload length.
func frameAt(data []byte, off int) (int, bool) {
	if len(data)-off < frameHeader || !bytes.Equal(data[off:off+4], frameMagic) {
		return 0, false
	}
	n := int(binary.LittleEndian.Uint32(data[off+4 : off+8]))
	if n > maxFrame || len(data)-off-frameHeader < n {
		return 0, false
	}
	payload := data[off+frameHeader : off+frameHeader+n]
	return n, frameCRC(data[off+4:off+8], payload) == binary.LittleEndian.Uint32(data[off+8:off+12])
}

// damage is a stretch of a segment that held no intact frame.
type damage struct {
	off, end int64
	tail     bool // it runs to the end of the file: a torn last write
}

// scanFrames finds the intact frames of a segment's contents (after the
// file magic, which the caller checked) and the damaged stretches between
// them. It never fails: whatever is unreadable is reported as damage.
func scanFrames(data []byte, start int) (frames []frameSpan, bad []damage) {
	off := start
	for off < len(data) {
		if n, ok := frameAt(data, off); ok {
			frames = append(frames, frameSpan{off: int64(off), size: int64(frameHeader + n)})
			off += frameHeader + n
			continue
		}
		next := -1
		for i := off + 1; i < len(data); {
			j := bytes.Index(data[i:], frameMagic)
			if j < 0 {
				break
			}
			if _, ok := frameAt(data, i+j); ok {
				next = i + j
				break
			}
			i += j + 1
		}
		if next < 0 {
			bad = append(bad, damage{off: int64(off), end: int64(len(data)), tail: true})
			break
		}
		bad = append(bad, damage{off: int64(off), end: int64(next)})
		off = next
	}
	return frames, bad
}

type frameSpan struct{ off, size int64 }

type frameState uint8

const (
	frameUnsent frameState = iota
	frameInFlight
	frameAcked
)

// frame is one spilled batch.
type frame struct {
	seg   *segment
	index int
	off   int64 // of the frame header
	size  int64 // header and payload
	state frameState
}

// segment is one spill file.
type segment struct {
	seq    uint64
	path   string
	f      *os.File // open for appending while this is the active segment
	size   int64
	frames []*frame
	acked  int
	// cursor is the first frame that may still be unsent.
	cursor int
}

// spill is the directory of segments. It is used by the recorder's loop
// goroutine only, except for bytes, which metrics read.
type spill struct {
	dir          string
	log          *slog.Logger
	lock         *os.File
	segs         []*segment // oldest first; the active one, if any, is last
	active       *segment
	nextSeq      uint64
	segmentBytes int64
	maxBytes     int64
	bytes        *atomicInt64
}

var errSpillFull = errors.New("the spill directory reached its size limit")

// openSpill locks dir (creating it if need be) and reads the segments a
// previous process left there, so that they are replayed.
func openSpill(dir string, segmentBytes, maxBytes int64, log *slog.Logger, bytesGauge *atomicInt64) (*spill, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("usage: creating the spill directory: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("usage: spill directory %s: %w", dir, err)
	}
	s := &spill{dir: dir, log: log, lock: lock, segmentBytes: segmentBytes, maxBytes: maxBytes, nextSeq: 1, bytes: bytesGauge}
	entries, err := os.ReadDir(dir)
	if err != nil {
		_ = unlockDir(lock) // the read error is the one to report
		return nil, fmt.Errorf("usage: reading the spill directory: %w", err)
	}
	for _, e := range entries {
		seq, ok := parseSegmentName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		s.nextSeq = max(s.nextSeq, seq+1)
		s.recover(seq, filepath.Join(dir, e.Name()))
	}
	slices.SortFunc(s.segs, func(a, b *segment) int { return compareUint(a.seq, b.seq) })
	return s, nil
}

func compareUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func segmentName(seq uint64) string {
	return fmt.Sprintf("%s%016x%s", segmentPrefix, seq, segmentSuffix)
}

func parseSegmentName(name string) (uint64, bool) {
	hex, ok := strings.CutPrefix(name, segmentPrefix)
	if !ok {
		return 0, false
	}
	hex, ok = strings.CutSuffix(hex, segmentSuffix)
	if !ok || len(hex) != 16 {
		return 0, false
	}
	seq, err := strconv.ParseUint(hex, 16, 64)
	return seq, err == nil
}

// recover reads a segment left by an earlier process. A segment is never
// appended to after a restart: a new process starts a new one, so a torn
// tail stays at the end of its file.
func (s *spill) recover(seq uint64, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		s.log.Error("usage spill: cannot read a segment; leaving it in place", "path", path, "err", err)
		return
	}
	if !bytes.HasPrefix(data, fileMagic) {
		if len(data) < len(fileMagic) && bytes.HasPrefix(fileMagic, data) {
			// Created, then the process died before the header was synced.
			s.log.Warn("usage spill: removing an empty segment torn while it was created", "path", path, "bytes", len(data))
			s.remove(path)
			return
		}
		bad := path + ".corrupt"
		s.log.Error("usage spill: a segment has no valid header; renamed, not replayed", "path", path, "renamed", bad, "bytes", len(data))
		if err := os.Rename(path, bad); err != nil {
			s.log.Error("usage spill: renaming a corrupt segment", "path", path, "err", err)
		}
		return
	}
	spans, bad := scanFrames(data, len(fileMagic))
	for _, d := range bad {
		if d.tail {
			s.log.Warn("usage spill: torn tail skipped (a write cut short by a crash); the batch in it was never acknowledged as spilled",
				"path", path, "offset", d.off, "bytes", d.end-d.off)
		} else {
			s.log.Error("usage spill: damaged bytes skipped; the records in them are lost",
				"path", path, "offset", d.off, "bytes", d.end-d.off)
		}
	}
	if len(spans) == 0 {
		s.remove(path)
		return
	}
	seg := &segment{seq: seq, path: path, size: int64(len(data))}
	for i, sp := range spans {
		seg.frames = append(seg.frames, &frame{seg: seg, index: i, off: sp.off, size: sp.size})
	}
	s.segs = append(s.segs, seg)
	s.bytes.Add(seg.size)
	s.log.Info("usage spill: found records to replay", "path", path, "batches", len(spans), "bytes", seg.size)
}

// append writes one batch (an encoded IngestRequest) as a frame, fsyncs it
// and returns it. On failure nothing of the batch is left in the segment.
func (s *spill) append(payload []byte) (*frame, error) {
	if len(payload) > maxFrame {
		return nil, fmt.Errorf("usage spill: a batch of %d bytes exceeds the frame limit of %d", len(payload), maxFrame)
	}
	b := encodeFrame(payload)
	if s.maxBytes > 0 && s.bytes.Load()+int64(len(b)) > s.maxBytes {
		return nil, errSpillFull
	}
	if s.active != nil && s.active.size+int64(len(b)) > s.segmentBytes && len(s.active.frames) > 0 {
		s.seal()
	}
	if s.active == nil {
		if err := s.create(); err != nil {
			return nil, err
		}
	}
	seg := s.active
	if _, err := seg.f.Write(b); err != nil {
		return nil, s.undo(seg, fmt.Errorf("usage spill: writing %s: %w", seg.path, err))
	}
	if err := seg.f.Sync(); err != nil {
		return nil, s.undo(seg, fmt.Errorf("usage spill: syncing %s: %w", seg.path, err))
	}
	fr := &frame{seg: seg, index: len(seg.frames), off: seg.size, size: int64(len(b))}
	seg.frames = append(seg.frames, fr)
	seg.size += int64(len(b))
	s.bytes.Add(int64(len(b)))
	return fr, nil
}

// undo cuts a failed write off the active segment and seals it, so that the
// next batch starts a fresh file rather than following a torn frame.
func (s *spill) undo(seg *segment, err error) error {
	if terr := seg.f.Truncate(seg.size); terr != nil {
		s.log.Error("usage spill: truncating after a failed write", "path", seg.path, "err", terr)
	}
	s.seal()
	if len(seg.frames) == 0 {
		s.drop(seg)
	}
	return err
}

// create starts a new active segment: header written and synced, and the
// directory synced so that the file itself survives a crash.
func (s *spill) create() error {
	seq := s.nextSeq
	s.nextSeq++
	path := filepath.Join(s.dir, segmentName(seq))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("usage spill: creating a segment: %w", err)
	}
	_, err = f.Write(fileMagic)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		_ = f.Close() // the write error is the one to report
		s.remove(path)
		return fmt.Errorf("usage spill: creating %s: %w", path, err)
	}
	seg := &segment{seq: seq, path: path, f: f, size: int64(len(fileMagic))}
	s.segs = append(s.segs, seg)
	s.active = seg
	s.bytes.Add(seg.size)
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// seal stops appending to the active segment.
func (s *spill) seal() {
	if s.active == nil {
		return
	}
	if err := s.active.f.Close(); err != nil {
		s.log.Error("usage spill: closing a segment", "path", s.active.path, "err", err)
	}
	s.active.f = nil
	s.active = nil
}

// next returns the oldest frame not yet sent, or nil.
func (s *spill) next() *frame {
	for _, seg := range s.segs {
		for ; seg.cursor < len(seg.frames); seg.cursor++ {
			if fr := seg.frames[seg.cursor]; fr.state == frameUnsent {
				return fr
			}
		}
	}
	return nil
}

// read returns a frame's payload, checking it again: the file may have been
// damaged since it was written or scanned.
func (s *spill) read(fr *frame) ([]byte, error) {
	buf := make([]byte, fr.size)
	f, err := os.Open(fr.seg.path)
	if err != nil {
		return nil, fmt.Errorf("usage spill: opening %s: %w", fr.seg.path, err)
	}
	_, err = f.ReadAt(buf, fr.off)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("usage spill: reading %s at %d: %w", fr.seg.path, fr.off, err)
	}
	n, ok := frameAt(buf, 0)
	if !ok || int64(n+frameHeader) != fr.size {
		return nil, fmt.Errorf("usage spill: the batch at %s offset %d no longer matches its checksum", fr.seg.path, fr.off)
	}
	return buf[frameHeader:], nil
}

// sent marks a frame in flight.
func (s *spill) sent(fr *frame) { fr.state = frameInFlight }

// unsent puts a frame back in line, after a stream broke before its ack.
func (s *spill) unsent(fr *frame) {
	if fr.state != frameInFlight {
		return
	}
	fr.state = frameUnsent
	fr.seg.cursor = min(fr.seg.cursor, fr.index)
}

// acked marks a frame done and deletes its segment once every frame in it
// is done.
func (s *spill) acked(fr *frame) {
	if fr.state == frameAcked {
		return
	}
	fr.state = frameAcked
	seg := fr.seg
	seg.acked++
	if seg.acked < len(seg.frames) {
		return
	}
	if seg == s.active {
		s.seal()
	}
	s.drop(seg)
}

// drop deletes a segment whose batches need no replay.
func (s *spill) drop(seg *segment) {
	s.segs = slices.DeleteFunc(s.segs, func(x *segment) bool { return x == seg })
	s.bytes.Add(-seg.size)
	s.remove(seg.path)
}

func (s *spill) remove(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("usage spill: removing a segment", "path", path, "err", err)
	}
}

// pending reports whether any frame awaits an acknowledgement.
func (s *spill) pending() bool { return len(s.segs) > 0 }

// close seals the active segment and releases the directory.
func (s *spill) close() error {
	s.seal()
	return unlockDir(s.lock)
}
