package extproc

import (
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/extproc/quota"
	"github.com/tollgate-dev/tollgate/extproc/translate"
)

// request is what the downstream stream learned about a request, shared
// with the upstream streams of its tries. The x-request-id that the
// downstream stream sets, which the tries' streams see, is the key: the two streams of one request reach this process
// because ext_proc runs beside Envoy.
type request struct {
	id     string
	api    translate.ClientAPI
	start  time.Time
	tenant *configv1.Tenant
	key    *configv1.Key
	model  *configv1.Model
	// deployments are those of model that the request may use (its
	// privacy requirement), in the model's order.
	deployments []*configv1.Deployment
	requirement requirement
	// redactions counts what redaction replaced in body; nil when the
	// policy does not redact.
	redactions *usagev1.Redactions
	body       []byte // as the client sent it (redacted if the policy says so); each try translates it for its provider
	stream     bool
	noStore    bool
	// keepContent: the policy keeps this request's bodies (content.go).
	keepContent bool
	// outputCap is the policy's limit on output tokens: every try's request
	// carries it as its output limit (0: none).
	outputCap int64
	// first is the request as translated for the first deployment when it
	// was checked; its first try (nearly always that deployment) reuses it.
	first           translate.ProviderRequest
	firstDeployment string
	// reservation holds the request's worst case against its tenant's and
	// key's limits until the request settles at its actual usage.
	reservation *quota.Reservation
	// span is the request's trace span, the parent of its tries' spans;
	// log carries the request's id on every line.
	span trace.Span
	log  *requestLog

	mu             sync.Mutex
	tries          int
	last           *try // the latest try; its outcome is the request's
	open           int  // tries whose stream has not ended
	downstreamDone bool
	// record writes the usage record; it runs once, when the downstream
	// stream and every try have ended.
	record   func()
	recorded sync.Once
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
	// The response as the client received it, when the request keeps
	// content, up to the capture limit (content.go).
	response    []byte
	responseCut bool
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

// startTry registers a new try and returns its number (1 for the first);
// the caller calls endTry when its stream ends.
func (r *request) startTry(t *try) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tries++
	r.last = t
	r.open++
	return r.tries
}

// endTry notes that a try's stream ended; the request's usage is written
// once the downstream stream has ended too.
func (r *request) endTry() {
	r.mu.Lock()
	r.open--
	ready := r.open == 0 && r.downstreamDone
	r.mu.Unlock()
	if ready {
		r.recordOnce()
	}
}

// downstreamEnded notes that the downstream stream ended. Envoy ends it
// when the request is over, or (since 1.37) right after the response
// headers while the body still streams through the try: the usage is then
// written when the try ends. A try that never ends (it cannot: Envoy resets
// streams after its timeouts) is cut off after maxWait.
func (r *request) downstreamEnded(maxWait time.Duration) {
	r.mu.Lock()
	r.downstreamDone = true
	ready := r.open == 0
	r.mu.Unlock()
	if ready {
		r.recordOnce()
		return
	}
	time.AfterFunc(maxWait, r.recordOnce)
}

func (r *request) recordOnce() { r.recorded.Do(r.record) }

// outcome returns the latest try, copied under the lock.
func (r *request) outcome() (try, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		return try{}, r.tries
	}
	return *r.last, r.tries
}
