// Package testport hands tests TCP ports on 127.0.0.1 for servers whose port
// must be known before they bind it (a data plane binds the port that the
// control plane's listener names).
//
// Ports come from 20000–31999, below Linux's ephemeral range (32768–60999):
// a port the kernel hands to an outgoing connection, or to a server bound to
// port 0, is never one of these. Within a test process no port is handed out
// twice, so parallel tests cannot pick the same one.
package testport

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

const (
	low  = 20000
	high = 32000
)

var (
	mu   sync.Mutex
	used = map[int]bool{}
)

// Free returns a port that was free a moment ago and that this process has
// not handed out before.
func Free(t testing.TB) int {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		p := low + rand.IntN(high-low)
		if used[p] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		if err := ln.Close(); err != nil {
			continue
		}
		used[p] = true
		return p
	}
	t.Fatal("testport: no free port in 20000-31999")
	return 0
}
