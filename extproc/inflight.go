package extproc

import (
	"sync"
	"time"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	"github.com/tollgate-dev/tollgate/extproc/translate"
)

// request is what the downstream stream learned about a request, shared
// with the upstream streams of its tries. The x-request-id that the
// downstream stream sets, which the tries' streams see, is the key: the two streams of one request reach this process
// because ext_proc runs beside Envoy.
type request struct {
	id      string
	api     translate.ClientAPI
	start   time.Time
	tenant  *configv1.Tenant
	key     *configv1.Key
	model   *configv1.Model
	body    []byte // as the client sent it; each try translates it for its provider
	stream  bool
	noStore bool
	// first is the request as translated for the first deployment when it
	// was checked; its first try (nearly always that deployment) reuses it.
	first           translate.ProviderRequest
	firstDeployment string

	mu    sync.Mutex
	tries int
	last  *try // the latest try; its outcome is the request's
	open  int  // tries whose stream has not ended
	idle  chan struct{}
}

// try is one attempt at one deployment.
type try struct {
	deployment *configv1.Deployment
	provider   *configv1.Provider
	status     int
	usage      translate.Usage
	firstByte  time.Time
	errorType  string
	complete   bool // the provider's response reached its end
}

// inflight holds the requests between their downstream headers and the end
// of their downstream stream.
type inflight struct {
	mu sync.Mutex
	m  map[string]*request
}

func newInflight() *inflight { return &inflight{m: map[string]*request{}} }

func (f *inflight) add(r *request) {
	f.mu.Lock()
	f.m[r.id] = r
	f.mu.Unlock()
}

func (f *inflight) get(id string) *request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[id]
}

func (f *inflight) remove(id string) {
	f.mu.Lock()
	delete(f.m, id)
	f.mu.Unlock()
}

func (f *inflight) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}

// startTry registers a new try; the caller calls endTry when its stream
// ends.
func (r *request) startTry(t *try) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tries++
	r.last = t
	if r.open == 0 {
		r.idle = make(chan struct{})
	}
	r.open++
}

func (r *request) endTry() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.open--
	if r.open == 0 {
		close(r.idle)
	}
}

// waitTries waits for open tries to finish, at most d: Envoy ends the
// downstream stream after the response, but the try's stream may be a
// moment behind on another connection.
func (r *request) waitTries(d time.Duration) {
	r.mu.Lock()
	if r.open == 0 {
		r.mu.Unlock()
		return
	}
	idle := r.idle
	r.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}

// outcome returns the latest try, copied under the lock.
func (r *request) outcome() (try, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		return try{}, r.tries
	}
	return *r.last, r.tries
}
