// Package loadtest drives Tollgate's ext_proc server over loopback gRPC
// with the messages Envoy sends for a chat completion, beside a no-op
// ext_proc server under the same load, and reports throughput, latency, CPU
// and memory of each (`tollgate bench extproc`; figures in
// docs/benchmarks.md).
//
// Both servers and the load generator run in this one process, one server
// at a time: the process's CPU time over a phase is then that server's
// plus the generator's, and the difference between the two servers is
// what Tollgate's processing costs.
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tollgate-dev/tollgate/extproc"
)

// Server names, as reported.
const (
	ServerTollgate = "tollgate"
	ServerNoop     = "noop"
)

// Scenario names.
const (
	// NonStreaming is a chat completion answered in one response body message.
	NonStreaming = "non-streaming"
	// Streaming is a streamed chat completion of Options.Chunks content events.
	Streaming = "streaming"
	// LongStreaming is Streaming with Options.LongChunks events: memory per
	// stream must not grow with its length.
	LongStreaming = "long-streaming"
)

// ThroughputGoal is issue 4's goal: Tollgate serves at least this share of
// the no-op server's non-streaming requests per second.
const ThroughputGoal = 0.60

// ErrOptions marks a run refused for its options.
var ErrOptions = errors.New("bad options")

// Options configure a run. Zero values take the defaults noted.
type Options struct {
	Concurrency int           // requests in flight at once; 64
	Duration    time.Duration // per phase; 10s (ignored when Requests is set)
	Requests    int           // per phase, instead of a duration
	Chunks      int           // content events of a streamed answer; 200
	LongChunks  int           // content events of the long stream; 2000
	Keys        int           // client keys, used in turn; 100
	Conns       int           // gRPC connections per server, as Envoy has one per worker; 2
	// Rounds splits each phase: the servers take turns, a round each,
	// Rounds times; 5.
	Rounds int
	// Network is "tcp" (127.0.0.1) or "unix" (sockets in a temporary
	// directory).
	Network   string
	Servers   []string // ServerTollgate, ServerNoop; both
	Scenarios []string // NonStreaming, Streaming, LongStreaming; all
	// ProfileDir, if set, receives a CPU profile of each round
	// (<server>-<scenario>-<round>.cpu.pprof).
	ProfileDir string
	// Progress receives a line as each phase starts; nil for none.
	Progress io.Writer
	// Config is the gateway Tollgate serves; NewStaticConfig(Keys) when nil.
	Config *StaticConfig
}

func (o *Options) defaults() error {
	if o.Concurrency == 0 {
		o.Concurrency = 64
	}
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Chunks == 0 {
		o.Chunks = 200
	}
	if o.LongChunks == 0 {
		o.LongChunks = 2000
	}
	if o.Keys == 0 {
		o.Keys = 100
	}
	if o.Conns == 0 {
		o.Conns = 2
	}
	if o.Rounds == 0 {
		o.Rounds = 5
	}
	if o.Requests > 0 && o.Requests < o.Rounds {
		o.Rounds = o.Requests
	}
	if o.Network == "" {
		o.Network = "tcp"
	}
	if len(o.Servers) == 0 {
		o.Servers = []string{ServerTollgate, ServerNoop}
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = []string{NonStreaming, Streaming, LongStreaming}
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	var errs []error
	if o.Concurrency < 0 || o.Requests < 0 || o.Chunks < 0 || o.LongChunks < 0 || o.Keys < 0 || o.Conns < 0 || o.Rounds < 0 || o.Duration < 0 {
		errs = append(errs, errors.New("concurrency, duration, requests, chunks, long chunks, keys, connections and rounds must not be negative"))
	}
	if o.Network != "tcp" && o.Network != "unix" {
		errs = append(errs, fmt.Errorf("network %q: want tcp or unix", o.Network))
	}
	for i, s := range o.Servers {
		if slices.Contains(o.Servers[:i], s) {
			errs = append(errs, fmt.Errorf("server %q twice", s))
		}
		if s != ServerTollgate && s != ServerNoop {
			errs = append(errs, fmt.Errorf("server %q: want %s or %s", s, ServerTollgate, ServerNoop))
		}
	}
	for _, s := range o.Scenarios {
		if s != NonStreaming && s != Streaming && s != LongStreaming {
			errs = append(errs, fmt.Errorf("scenario %q: want %s, %s or %s", s, NonStreaming, Streaming, LongStreaming))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrOptions, errors.Join(errs...))
	}
	return nil
}

// target is one server under test and the connections that drive it.
type target struct {
	name    string
	srv     *grpc.Server
	conns   []*grpc.ClientConn
	clients []extprocv3.ExternalProcessorClient
	usage   *UsageCounter // Tollgate's; nil for the no-op server
}

func (t *target) close() {
	for _, c := range t.conns {
		_ = c.Close() // the run is over; nothing to do about a failed close
	}
	t.srv.Stop()
}

// listen serves srv on loopback or a socket in dir and connects to it.
func listen(name string, srv *grpc.Server, network, dir string, conns int) (*target, error) {
	var (
		lis  net.Listener
		err  error
		addr string
	)
	if network == "unix" {
		path := filepath.Join(dir, name+".sock")
		lis, err = net.Listen("unix", path)
		addr = "unix://" + path
	} else {
		lis, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			addr = "passthrough:///" + lis.Addr().String()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listen for the %s server: %w", name, err)
	}
	go func() { _ = srv.Serve(lis) }() // Serve returns when Stop closes the listener
	t := &target{name: name, srv: srv}
	for range conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.close()
			return nil, fmt.Errorf("connect to the %s server: %w", name, err)
		}
		// Connect now, so that no phase pays for the handshake.
		cc.Connect()
		t.conns = append(t.conns, cc)
		t.clients = append(t.clients, extprocv3.NewExternalProcessorClient(cc))
	}
	return t, nil
}

// Run starts the servers, runs every phase one after the other, and
// reports. A phase that fails is reported in Report.Problems; the error is
// for a run that could not start or was cancelled.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	cfg := o.Config
	if cfg == nil {
		var err error
		if cfg, err = NewStaticConfig(o.Keys); err != nil {
			return nil, err
		}
	}
	dir := ""
	if o.Network == "unix" {
		var err error
		if dir, err = os.MkdirTemp("", "tollgate-bench-"); err != nil {
			return nil, fmt.Errorf("loadtest: socket directory: %w", err)
		}
		defer func() { _ = os.RemoveAll(dir) }() // best effort: it is a temporary directory
	}
	if o.ProfileDir != "" {
		if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
			return nil, fmt.Errorf("loadtest: profile directory: %w", err)
		}
	}

	r := &runner{o: o, secrets: cfg.Secrets(), idPrefix: "lt-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"}
	targets := map[string]*target{}
	defer func() {
		for _, t := range targets {
			t.close()
		}
	}()
	for _, name := range o.Servers {
		var opts []grpc.ServerOption
		if o.ProfileDir != "" {
			opts = append(opts, grpc.StreamInterceptor(labelServer))
		}
		srv := grpc.NewServer(opts...)
		var usage *UsageCounter
		if name == ServerTollgate {
			usage = &UsageCounter{}
			extprocv3.RegisterExternalProcessorServer(srv, extproc.New(extproc.Options{
				Config: cfg, Usage: usage, Logger: slog.New(slog.NewTextHandler(o.Progress, &slog.HandlerOptions{Level: slog.LevelWarn})),
			}))
		} else {
			extprocv3.RegisterExternalProcessorServer(srv, NoopServer{})
		}
		t, err := listen(name, srv, o.Network, dir, o.Conns)
		if err != nil {
			return nil, fmt.Errorf("loadtest: %w", err)
		}
		t.usage = usage
		targets[name] = t
	}

	rep := newReport(o)
	for _, sc := range o.Scenarios {
		chunks := 0
		switch sc {
		case Streaming:
			chunks = o.Chunks
		case LongStreaming:
			chunks = o.LongChunks
		}
		ex := newExchange(chunks)
		phases := make([]*phase, len(o.Servers))
		for i, name := range o.Servers {
			phases[i] = &phase{t: targets[name], p: Phase{Server: name, Scenario: sc, Chunks: chunks,
				BodyChunks: len(ex.chunks), PeakRSSOfPhase: true, expectTokens: ex.outputTokens}}
		}
		// The servers take turns, round by round, so that whatever else
		// the machine does weighs on both alike.
		for round := range o.Rounds {
			for _, ph := range phases {
				if ph.p.Errors > 0 {
					continue
				}
				_, _ = fmt.Fprintf(o.Progress, "tollgate bench extproc: %s, %s, round %d of %d\n", ph.t.name, scenarioLabel(sc, chunks), round+1, o.Rounds)
				if err := r.round(ctx, ph, ex, round); err != nil {
					return nil, err
				}
			}
		}
		for _, ph := range phases {
			rep.Phases = append(rep.Phases, ph.finish())
		}
	}
	rep.Machine.LoadEnd = loadAverage()
	rep.conclude()
	return rep, nil
}

type runner struct {
	o        Options
	secrets  []string
	idPrefix string
	seq      atomic.Uint64
}

// phase accumulates one server's rounds under one scenario.
type phase struct {
	t                     *target
	p                     Phase
	latencies             []time.Duration
	elapsed, cpu          time.Duration
	cpuOK                 bool
	allocBytes, allocObjs uint64
}

// round puts one server under one scenario's load for a round and adds
// what it measured to ph.
func (r *runner) round(ctx context.Context, ph *phase, ex *exchange, round int) error {
	t, p := ph.t, &ph.p
	if round == 0 {
		// Warm up: connections, the servers' pools, the heap's size.
		if warm := r.load(ctx, t, ex, 4*r.o.Concurrency, 0); warm.err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.Errors, p.FirstError = warm.errors, "warm-up: "+warm.err.Error()
			return nil
		}
	}
	// Each round starts from the same state, and reports its own peaks.
	runtime.GC()
	debug.FreeOSMemory()
	p.PeakRSSOfPhase = resetPeakRSS() && p.PeakRSSOfPhase
	var u0 UsageCounts
	if t.usage != nil {
		u0 = t.usage.Counts()
	}
	stopProfile, err := r.profile(t.name, p.Scenario, round)
	if err != nil {
		return err
	}
	m0 := readMem()
	cpu0, cpuOK := cpuTime()
	hw := watchHeap(50 * time.Millisecond)
	start := time.Now()

	n, d := 0, r.o.Duration/time.Duration(r.o.Rounds)
	if r.o.Requests > 0 {
		// Spread the requests over the rounds, the remainder in the first.
		n = r.o.Requests / r.o.Rounds
		if round == 0 {
			n += r.o.Requests % r.o.Rounds
		}
	}
	res := r.load(ctx, t, ex, n, d)

	elapsed := time.Since(start)
	live, inUse := hw.end()
	cpu1, _ := cpuTime()
	m1 := readMem()
	stopProfile()
	if res.err != nil && ctx.Err() != nil {
		return ctx.Err()
	}

	p.Requests += int64(len(res.latencies))
	p.Errors += res.errors
	if res.err != nil && p.FirstError == "" {
		p.FirstError = res.err.Error()
	}
	if rss, ok := peakRSS(); ok {
		p.PeakRSSBytes = max(p.PeakRSSBytes, rss)
	}
	p.PeakLiveHeapBytes, p.PeakHeapInUseBytes = max(p.PeakLiveHeapBytes, live), max(p.PeakHeapInUseBytes, inUse)
	if t.usage != nil {
		u := t.usage.Counts().sub(u0)
		if p.Usage != nil {
			u = u.add(*p.Usage)
		}
		p.Usage = &u
	}
	ph.latencies = append(ph.latencies, res.latencies...)
	ph.elapsed += elapsed
	ph.cpu += cpu1 - cpu0
	ph.cpuOK = cpuOK
	ph.allocBytes += m1.allocBytes - m0.allocBytes
	ph.allocObjs += m1.allocObjects - m0.allocObjects
	return nil
}

// finish turns the sums of the rounds into figures.
func (ph *phase) finish() Phase {
	p := ph.p
	p.Seconds = ph.elapsed.Seconds()
	n := len(ph.latencies)
	if n == 0 {
		return p
	}
	slices.Sort(ph.latencies)
	p.RequestsPerSecond = float64(n) / ph.elapsed.Seconds()
	p.P50Ms = ms(percentile(ph.latencies, 0.50))
	p.P99Ms = ms(percentile(ph.latencies, 0.99))
	p.MaxMs = ms(ph.latencies[n-1])
	if ph.cpuOK {
		p.CPUPerRequestUs = float64(ph.cpu) / float64(n) / 1e3
	}
	p.AllocBytesPerRequest = float64(ph.allocBytes) / float64(n)
	p.AllocsPerRequest = float64(ph.allocObjs) / float64(n)
	p.AllocBytesPerChunk = p.AllocBytesPerRequest / float64(p.BodyChunks)
	return p
}

// profile writes a round's CPU profile; `go tool pprof` merges the rounds'
// files when given them all.
func (r *runner) profile(server, scenario string, round int) (stop func(), err error) {
	if r.o.ProfileDir == "" {
		return func() {}, nil
	}
	f, err := os.Create(filepath.Join(r.o.ProfileDir, fmt.Sprintf("%s-%s-%d.cpu.pprof", server, scenario, round+1)))
	if err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close() // the profile was never started; its error is the one to report
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			_, _ = fmt.Fprintf(r.o.Progress, "tollgate bench extproc: writing %s: %v\n", f.Name(), err)
		}
	}, nil
}

// In a profile, samples of the servers' handlers carry role=server and
// those of the load generator's requests role=loadgen (pprof -tagfocus);
// gRPC's transport goroutines, both sides', and the GC carry none.
const profileRole = "role"

func labelServer(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	var err error
	pprof.Do(ss.Context(), pprof.Labels(profileRole, "server"), func(context.Context) { err = handler(srv, ss) })
	return err
}

type loadResult struct {
	latencies []time.Duration
	errors    int64
	err       error // the first failure
}

// load runs n requests (or, with n == 0, requests for d) at the configured
// concurrency: each worker sends its next request when the last one ends,
// as a closed loop. The first failure stops the load: figures from a server
// that fails are not figures.
func (r *runner) load(ctx context.Context, t *target, ex *exchange, n int, d time.Duration) loadResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	deadline := time.Now().Add(d)
	var (
		issued atomic.Int64
		mu     sync.Mutex
		res    loadResult
		wg     sync.WaitGroup
	)
	for w := range r.o.Concurrency {
		c := t.clients[w%len(t.clients)]
		wg.Go(func() {
			if r.o.ProfileDir != "" {
				pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels(profileRole, "loadgen")))
			}
			lat := make([]time.Duration, 0, 1024)
			var failed error
			for ctx.Err() == nil {
				if n > 0 {
					if issued.Add(1) > int64(n) {
						break
					}
				} else if !time.Now().Before(deadline) {
					break
				}
				seq := r.seq.Add(1)
				begin := time.Now()
				err := ex.do(ctx, c, r.idPrefix+strconv.FormatUint(seq, 10), r.secrets[seq%uint64(len(r.secrets))])
				if err != nil {
					if ctx.Err() == nil {
						failed = err
						cancel()
					}
					break
				}
				lat = append(lat, time.Since(begin))
			}
			mu.Lock()
			defer mu.Unlock()
			res.latencies = append(res.latencies, lat...)
			if failed != nil {
				res.errors++
				if res.err == nil {
					res.err = failed
				}
			}
		})
	}
	wg.Wait()
	if res.err == nil && ctx.Err() != nil {
		res.err = context.Cause(ctx)
	}
	return res
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
