package fakeprovider

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// stream writes a streamed answer frame by frame, flushing each one, with
// the Behavior's delay between frames and its cut: after CutAfter frames
// the next write drops the connection instead, so the client never sees
// the terminal event.
type stream struct {
	c     *call
	rc    *http.ResponseController
	delay time.Duration
	cut   int
	n     int
	eol   string // "\n", or "\r\n" for Google's SSE
}

// startStream answers 200 with contentType and returns the stream to
// write the body into. The headers are flushed at once, as the providers
// flush them before the first token.
func (c *call) startStream(contentType, eol string) *stream {
	h := c.w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-cache")
	c.setStatus(http.StatusOK)
	c.w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(c.w)
	if err := rc.Flush(); err != nil {
		panic(http.ErrAbortHandler)
	}
	return &stream{c: c, rc: rc, delay: c.b.EventDelay, cut: c.b.CutAfter, eol: eol}
}

// sse writes one server-sent event: an "event:" line when name is not "",
// then the data line.
func (s *stream) sse(name string, data any) {
	var raw []byte
	switch d := data.(type) {
	case string:
		raw = []byte(d)
	default:
		var err error
		if raw, err = json.Marshal(d); err != nil {
			panic(fmt.Sprintf("fakeprovider: marshal event: %v", err)) // the fake's bug
		}
	}
	frame := ""
	if name != "" {
		frame = "event: " + name + s.eol
	}
	s.frame(frame + "data: " + string(raw) + s.eol + s.eol)
}

// frame writes raw bytes as one event: wait the delay, cut if it is time,
// write, flush.
func (s *stream) frame(b string) {
	if s.n > 0 && s.delay > 0 {
		t := time.NewTimer(s.delay)
		select {
		case <-t.C:
		case <-s.c.r.Context().Done():
			t.Stop()
			panic(http.ErrAbortHandler)
		}
	}
	if s.cut > 0 && s.n >= s.cut {
		// Drop the connection without the terminal chunk: the client sees
		// an unexpected EOF (HTTP/1.1) or a stream reset (HTTP/2), as when a
		// provider's connection breaks.
		panic(http.ErrAbortHandler)
	}
	if _, err := s.c.w.Write([]byte(b)); err != nil {
		panic(http.ErrAbortHandler) // the client has gone
	}
	if err := s.rc.Flush(); err != nil {
		panic(http.ErrAbortHandler)
	}
	s.n++
	s.c.s.mu.Lock()
	s.c.rec.Events = s.n
	s.c.s.mu.Unlock()
}
