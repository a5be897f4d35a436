package signin

import (
	"sync"
	"time"
)

// ipThrottle counts sign-in attempts per client address in fixed windows.
// It lives in memory, so each control-plane replica counts its own: with N
// replicas behind a balancer an address gets up to N times the limit, which
// still turns a password-guessing run from millions of tries into dozens.
// The per-account lock (in the store) is shared by every replica.
type ipThrottle struct {
	mu     sync.Mutex
	limit  int
	window time.Duration
	seen   map[string]*ipWindow
}

type ipWindow struct {
	start time.Time
	n     int
}

// maxTrackedAddrs bounds the map; past it, ended windows are dropped, and if
// all are still live every count is forgotten (an attacker who can rotate
// through that many addresses gains nothing over using fresh ones; the
// per-account lock still holds).
const maxTrackedAddrs = 100_000

func newIPThrottle(limit int, window time.Duration) *ipThrottle {
	return &ipThrottle{limit: limit, window: window, seen: map[string]*ipWindow{}}
}

// allow counts one attempt from addr at now and reports whether it is
// within the limit.
func (t *ipThrottle) allow(addr string, now time.Time) bool {
	if t.limit <= 0 {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.seen[addr]
	if !ok || now.Sub(w.start) >= t.window {
		if !ok && len(t.seen) >= maxTrackedAddrs {
			t.prune(now)
		}
		w = &ipWindow{start: now}
		t.seen[addr] = w
	}
	w.n++
	return w.n <= t.limit
}

func (t *ipThrottle) prune(now time.Time) {
	for a, w := range t.seen {
		if now.Sub(w.start) >= t.window {
			delete(t.seen, a)
		}
	}
	if len(t.seen) >= maxTrackedAddrs {
		clear(t.seen)
	}
}
