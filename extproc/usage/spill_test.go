package usage

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLog() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func testSpill(t *testing.T, dir string, segmentBytes int64) (*spill, *atomicInt64, *logBuffer) {
	t.Helper()
	log, buf := newLog()
	gauge := &atomicInt64{}
	s, err := openSpill(dir, segmentBytes, 0, log, gauge)
	if err != nil {
		t.Fatal(err)
	}
	return s, gauge, buf
}

// writeSegment spills payloads into a fresh directory and returns the one
// segment file's contents and the offsets at which each frame ends.
func writeSegment(t *testing.T, payloads ...[]byte) ([]byte, []int) {
	t.Helper()
	dir := t.TempDir()
	s, _, _ := testSpill(t, dir, 1<<20)
	var ends []int
	for _, p := range payloads {
		fr, err := s.append(p)
		if err != nil {
			t.Fatal(err)
		}
		ends = append(ends, int(fr.off+fr.size))
	}
	path := s.active.path
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data, ends
}

func payloads() [][]byte {
	return [][]byte{
		[]byte("first batch"),
		bytes.Repeat([]byte{0xF7, 'T', 'G', 'U'}, 20), // frame magic inside a payload
		[]byte(strings.Repeat("third", 30)),
	}
}

// recoverFrom writes data as a segment into a new directory and opens it as
// a restarted process would.
func recoverFrom(t *testing.T, data []byte) (*spill, *atomicInt64, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, segmentName(7)), data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, gauge, logs := testSpill(t, dir, 1<<20)
	t.Cleanup(func() { _ = s.close() })
	return s, gauge, logs.String()
}

func readAll(t *testing.T, s *spill) [][]byte {
	t.Helper()
	var out [][]byte
	for fr := s.next(); fr != nil; fr = s.next() {
		p, err := s.read(fr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
		s.sent(fr)
	}
	return out
}

// A crash can cut the last write anywhere. Whatever the cut, the complete
// frames before it are recovered, the rest is reported as a torn tail, and
// nothing panics.
func TestTornTailAtEveryByteIsSkipped(t *testing.T) {
	data, ends := writeSegment(t, payloads()...)
	want := payloads()
	for cut := len(fileMagic); cut < len(data); cut++ {
		s, _, logs := recoverFrom(t, data[:cut])
		complete := 0
		for _, e := range ends {
			if e <= cut {
				complete++
			}
		}
		got := readAll(t, s)
		if len(got) != complete {
			t.Fatalf("cut at %d: recovered %d frames, want %d", cut, len(got), complete)
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("cut at %d: frame %d = %q, want %q", cut, i, got[i], want[i])
			}
		}
		atBoundary := cut == len(fileMagic) || (complete > 0 && ends[complete-1] == cut)
		if torn := strings.Contains(logs, "torn tail skipped"); torn == atBoundary {
			t.Fatalf("cut at %d: torn tail logged = %v, want %v; log:\n%s", cut, torn, !atBoundary, logs)
		}
	}
}

// Damage in the middle of a file costs only the frame it hits.
func TestDamagedFrameInTheMiddleIsSkipped(t *testing.T) {
	data, ends := writeSegment(t, payloads()...)
	data[ends[0]+frameHeader+3] ^= 0xFF // inside the second frame's payload
	s, _, logs := recoverFrom(t, data)
	got := readAll(t, s)
	want := payloads()
	if len(got) != 2 || !bytes.Equal(got[0], want[0]) || !bytes.Equal(got[1], want[2]) {
		t.Fatalf("recovered %q, want the first and third batches", got)
	}
	if !strings.Contains(logs, "damaged bytes skipped") || !strings.Contains(logs, "offset="+strconv.Itoa(ends[0])) {
		t.Errorf("no log line for the damaged frame at %d:\n%s", ends[0], logs)
	}
}

func TestSegmentWithoutHeaderIsSetAside(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, segmentName(1))
	if err := os.WriteFile(bad, []byte("this is not a spill segment"), 0o600); err != nil {
		t.Fatal(err)
	}
	torn := filepath.Join(dir, segmentName(2))
	if err := os.WriteFile(torn, fileMagic[:3], 0o600); err != nil {
		t.Fatal(err)
	}
	s, gauge, logs := testSpill(t, dir, 1<<20)
	defer func() { _ = s.close() }()
	if s.next() != nil || gauge.Load() != 0 {
		t.Errorf("frames found in files without a header")
	}
	if _, err := os.Stat(bad + ".corrupt"); err != nil {
		t.Errorf("the unreadable segment was not renamed: %v\n%s", err, logs)
	}
	if _, err := os.Stat(torn); !os.IsNotExist(err) {
		t.Errorf("the segment torn while being created is still there: %v", err)
	}
	// New segments continue after the highest number seen.
	if _, err := s.append([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if filepath.Base(s.active.path) != segmentName(3) {
		t.Errorf("new segment %s, want %s", filepath.Base(s.active.path), segmentName(3))
	}
}

// Segments rotate at their size limit, are deleted once every batch in them
// is acknowledged, and the size gauge follows.
func TestSegmentsRotateAndAreDeletedWhenAcknowledged(t *testing.T) {
	dir := t.TempDir()
	s, gauge, _ := testSpill(t, dir, 100)
	defer func() { _ = s.close() }()
	var frames []*frame
	for range 5 {
		fr, err := s.append(bytes.Repeat([]byte("p"), 60))
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, fr)
	}
	files := func() int {
		m, _ := filepath.Glob(filepath.Join(dir, segmentPrefix+"*"))
		return len(m)
	}
	if files() != 5 || len(s.segs) != 5 {
		t.Fatalf("%d files, %d segments; want one per 72-byte frame at a 100-byte limit", files(), len(s.segs))
	}
	if want := int64(5 * (len(fileMagic) + frameHeader + 60)); gauge.Load() != want {
		t.Errorf("gauge %d, want %d", gauge.Load(), want)
	}
	// A frame that was sent and then the stream broke is offered again.
	first := s.next()
	s.sent(first)
	if s.next() != frames[1] {
		t.Fatal("next after sending the first is not the second")
	}
	s.unsent(first)
	if s.next() != first {
		t.Fatal("a frame put back is not offered first")
	}
	for _, fr := range frames {
		s.sent(fr)
		s.acked(fr)
	}
	if files() != 0 || gauge.Load() != 0 || s.pending() {
		t.Errorf("after every ack: %d files, gauge %d, pending %v", files(), gauge.Load(), s.pending())
	}
}

func TestSpillDirectoryIsLocked(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := testSpill(t, dir, 1<<20)
	if _, err := openSpill(dir, 1<<20, 0, slog.New(slog.DiscardHandler), &atomicInt64{}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second open: %v, want in use", err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s2, _, _ := testSpill(t, dir, 1<<20)
	_ = s2.close()
}

func TestSpillLimit(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	s, err := openSpill(t.TempDir(), 1<<20, 100, log, &atomicInt64{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.close() }()
	if _, err := s.append(make([]byte, 50)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.append(make([]byte, 50)); err != errSpillFull { //nolint:errorlint // append returns the sentinel itself
		t.Fatalf("second append: %v, want errSpillFull", err)
	}
}

// scanFrames must survive any input.
func FuzzScanFrames(f *testing.F) {
	f.Add(segmentForFuzz())
	f.Add([]byte{})
	f.Add(append(append([]byte{}, fileMagic...), frameMagic...))
	f.Fuzz(func(t *testing.T, data []byte) {
		frames, bad := scanFrames(data, 0)
		end := int64(0)
		for _, fr := range frames {
			if fr.off < end || fr.off+fr.size > int64(len(data)) {
				t.Fatalf("frame %+v overlaps or overruns (data %d bytes)", fr, len(data))
			}
			if _, ok := frameAt(data, int(fr.off)); !ok {
				t.Fatalf("frame at %d is not intact", fr.off)
			}
			end = fr.off + fr.size
		}
		for _, d := range bad {
			if d.off >= d.end || d.end > int64(len(data)) {
				t.Fatalf("damage %+v out of range", d)
			}
		}
	})
}

func segmentForFuzz() []byte {
	var b []byte
	b = append(b, fileMagic...)
	for _, p := range payloads() {
		b = append(b, encodeFrame(p)...)
	}
	return b
}
