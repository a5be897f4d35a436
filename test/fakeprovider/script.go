package fakeprovider

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The script headers; the package comment says what each does.
const (
	HeaderStatus           = "x-fake-status"
	HeaderError            = "x-fake-error"
	HeaderRetryAfter       = "x-fake-retry-after"
	HeaderLatency          = "x-fake-latency"
	HeaderEventDelay       = "x-fake-event-delay"
	HeaderCutAfter         = "x-fake-cut-after"
	HeaderNoUsage          = "x-fake-no-usage"
	HeaderText             = "x-fake-text"
	HeaderCachedTokens     = "x-fake-cached-tokens"
	HeaderCacheWriteTokens = "x-fake-cache-write-tokens"
	HeaderReasoningTokens  = "x-fake-reasoning-tokens"
)

// Behavior is how a fake answers one request. The zero value is a normal,
// successful answer.
type Behavior struct {
	// Status, when not 0, makes the fake answer with this HTTP status and
	// the provider's error body for it (after checking the credential, as
	// the provider would).
	Status int
	// RetryAfter goes with Status: the Retry-After header's value, in
	// seconds (Gemini: a RetryInfo detail in the body instead).
	RetryAfter string
	// Latency is the wait before anything is written, headers included.
	Latency time.Duration
	// EventDelay is the pause between stream events; 0 means
	// Options.EventDelay.
	EventDelay time.Duration
	// CutAfter, when not 0, drops the connection after that many stream
	// events, before the stream's terminal event; a non-streaming answer
	// is dropped after that many bytes of its body.
	CutAfter int
	// NoUsage leaves usage out of the answer.
	NoUsage bool
	// Text replaces the reply text (and suppresses tool calls).
	Text string
	// CachedTokens, CacheWriteTokens and ReasoningTokens are reported as
	// the package comment describes.
	CachedTokens     int
	CacheWriteTokens int
	ReasoningTokens  int
}

// Enqueue queues behaviours: each of the next requests takes the first one
// left, in order. "The next request gets a 429" is
// Enqueue(Behavior{Status: 429, RetryAfter: "1"}).
func (s *Server) Enqueue(b ...Behavior) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, b...)
}

// Script installs fn to choose the Behavior of each request that finds the
// queue empty; fn returning nil leaves the request to its headers. fn sees
// the recorded request (path, headers, body) and may be called from several
// goroutines at once. Script(nil) removes it.
func (s *Server) Script(fn func(r *Request) *Behavior) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = fn
}

// behavior picks the Behavior of a request: the queue's first, else the
// script's, else the one its headers describe.
func (s *Server) behavior(rec *Request) (Behavior, error) {
	s.mu.Lock()
	if len(s.queue) > 0 {
		b := s.queue[0]
		s.queue = s.queue[1:]
		s.mu.Unlock()
		return s.withDefaults(b), nil
	}
	script := s.script
	s.mu.Unlock()
	if script != nil {
		view := rec.copy()
		if b := script(&view); b != nil {
			return s.withDefaults(*b), nil
		}
	}
	b, err := parseHeaders(rec.Header)
	if err != nil {
		return Behavior{}, err
	}
	return s.withDefaults(b), nil
}

func (s *Server) withDefaults(b Behavior) Behavior {
	if b.EventDelay == 0 {
		b.EventDelay = s.opts.EventDelay
	}
	return b
}

// parseHeaders reads the x-fake-* headers. A malformed one is an error: a
// test that mistypes a script should fail loudly, not pass by accident.
func parseHeaders(h http.Header) (Behavior, error) {
	var b Behavior
	var errs []string
	num := func(name string, dst *int) {
		if v := h.Get(name); v != "" {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 {
				errs = append(errs, fmt.Sprintf("%s: %q is not a whole number", name, v))
				return
			}
			*dst = n
		}
	}
	dur := func(name string, dst *time.Duration) {
		if v := h.Get(name); v != "" {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil || d < 0 {
				errs = append(errs, fmt.Sprintf("%s: %q is not a duration such as 200ms", name, v))
				return
			}
			*dst = d
		}
	}
	num(HeaderStatus, &b.Status)
	if b.Status == 0 {
		num(HeaderError, &b.Status)
	}
	if b.Status != 0 && (b.Status < 400 || b.Status > 599) {
		errs = append(errs, fmt.Sprintf("%s: %d is not an error status (400-599)", HeaderStatus, b.Status))
	}
	b.RetryAfter = strings.TrimSpace(h.Get(HeaderRetryAfter))
	dur(HeaderLatency, &b.Latency)
	dur(HeaderEventDelay, &b.EventDelay)
	num(HeaderCutAfter, &b.CutAfter)
	if v := h.Get(HeaderNoUsage); v != "" {
		on, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %q is not 1 or 0", HeaderNoUsage, v))
		}
		b.NoUsage = on
	}
	b.Text = h.Get(HeaderText)
	num(HeaderCachedTokens, &b.CachedTokens)
	num(HeaderCacheWriteTokens, &b.CacheWriteTokens)
	num(HeaderReasoningTokens, &b.ReasoningTokens)
	if len(errs) > 0 {
		return Behavior{}, fmt.Errorf("bad script header: %s", strings.Join(errs, "; "))
	}
	return b, nil
}
