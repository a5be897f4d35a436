package loadtest

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
)

// Report is the outcome of a run; it is also the --json output.
type Report struct {
	Machine  Machine      `json:"machine"`
	Settings Settings     `json:"settings"`
	Phases   []Phase      `json:"phases"`
	Ratios   []Comparison `json:"ratios,omitempty"`
	Memory   *MemoryCheck `json:"memory,omitempty"`
	// Problems lists what makes the figures untrustworthy: failed requests,
	// usage records that do not match the requests. Empty on a good run.
	Problems []string `json:"problems"`
}

// Machine is where the run happened.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model,omitempty"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Hostname   string `json:"hostname,omitempty"`
	// The 1-minute load average as the run started and ended: above the
	// CPU count, other processes competed for the CPU.
	LoadStart float64 `json:"load_average_start"`
	LoadEnd   float64 `json:"load_average_end"`
}

// Settings are the options a run used.
type Settings struct {
	Concurrency     int     `json:"concurrency"`
	DurationSeconds float64 `json:"duration_seconds,omitempty"`
	Requests        int     `json:"requests,omitempty"`
	Chunks          int     `json:"chunks"`
	LongChunks      int     `json:"long_chunks"`
	Keys            int     `json:"keys"`
	Conns           int     `json:"conns"`
	Rounds          int     `json:"rounds"`
	Network         string  `json:"network"`
}

// Phase is one server under one scenario's load.
type Phase struct {
	Server   string `json:"server"`
	Scenario string `json:"scenario"`
	// Chunks is the content events of a streamed answer; 0 when not streaming.
	Chunks int `json:"chunks"`
	// BodyChunks is the number of response body messages per request:
	// 1 when not streaming, else the content events, the usage event and
	// [DONE].
	BodyChunks int     `json:"body_chunks"`
	Requests   int64   `json:"requests"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`

	RequestsPerSecond float64 `json:"requests_per_second"`
	P50Ms             float64 `json:"p50_ms"`
	P99Ms             float64 `json:"p99_ms"`
	MaxMs             float64 `json:"max_ms"`
	// CPUPerRequestUs is the process's CPU time (user+system) over the
	// phase divided by its requests: the server's and the load generator's.
	CPUPerRequestUs float64 `json:"cpu_per_request_us"`
	// PeakRSSBytes is the process's resident high-water mark: over this
	// phase when PeakRSSOfPhase, else since the process started.
	PeakRSSBytes   int64 `json:"peak_rss_bytes"`
	PeakRSSOfPhase bool  `json:"peak_rss_of_phase"`
	// Allocations (server and load generator) per request and per response
	// body chunk.
	AllocBytesPerRequest float64 `json:"alloc_bytes_per_request"`
	AllocsPerRequest     float64 `json:"allocs_per_request"`
	AllocBytesPerChunk   float64 `json:"alloc_bytes_per_chunk"`
	// Peaks sampled every 50ms: the heap the last GC found live, and the
	// heap in use (MemStats.HeapInuse).
	PeakLiveHeapBytes  uint64 `json:"peak_live_heap_bytes"`
	PeakHeapInUseBytes uint64 `json:"peak_heap_in_use_bytes"`
	// Usage is what Tollgate recorded during the phase; none for the no-op
	// server.
	Usage *UsageCounts `json:"usage,omitempty"`

	expectTokens int64
}

// Comparison is Tollgate against the no-op server under one scenario.
type Comparison struct {
	Scenario   string  `json:"scenario"`
	Chunks     int     `json:"chunks"`
	Throughput float64 `json:"throughput_ratio"` // Tollgate's requests/s over the no-op's
	// CPURatio is the no-op's CPU per request over Tollgate's: the
	// throughput ratio when the process has the CPU to itself and is
	// limited by it.
	CPURatio float64 `json:"cpu_ratio"`
	// ExtraCPUPerRequestUs and ExtraAllocBytesPerRequest are what
	// Tollgate's processing adds to a request: the load generator and gRPC
	// cost the same in both phases.
	ExtraCPUPerRequestUs      float64  `json:"extra_cpu_per_request_us"`
	ExtraAllocBytesPerRequest float64  `json:"extra_alloc_bytes_per_request"`
	Goal                      *float64 `json:"goal,omitempty"`
	GoalMet                   *bool    `json:"goal_met,omitempty"`
}

// MemoryCheck compares Tollgate's short and long streams: per-chunk
// allocation must not rise with the stream's length, and the live heap
// must not grow by a sizeable share of what keeping the streams' chunks
// would take.
type MemoryCheck struct {
	ShortChunks             int     `json:"short_chunks"`
	LongChunks              int     `json:"long_chunks"`
	AllocBytesPerChunkShort float64 `json:"alloc_bytes_per_chunk_short"`
	AllocBytesPerChunkLong  float64 `json:"alloc_bytes_per_chunk_long"`
	PeakLiveHeapShort       uint64  `json:"peak_live_heap_short"`
	PeakLiveHeapLong        uint64  `json:"peak_live_heap_long"`
	// IfRetainedBytes is what the long streams in flight would hold more
	// than the short ones if a server kept the chunks it has seen. The live
	// heap may grow by AllowedGrowthBytes: a quarter of that, and at least
	// 2 MiB, by which the GC's timing moves the sampled peak from run to
	// run. With few streams in flight, only the per-chunk check counts.
	IfRetainedBytes    uint64 `json:"if_retained_bytes"`
	AllowedGrowthBytes uint64 `json:"allowed_growth_bytes"`
	// The no-op server's live heap peaks, for comparison: gRPC's share.
	NoopPeakLiveHeapShort uint64 `json:"noop_peak_live_heap_short,omitempty"`
	NoopPeakLiveHeapLong  uint64 `json:"noop_peak_live_heap_long,omitempty"`
	Grows                 bool   `json:"grows"`
}

func newReport(o Options) *Report {
	host, _ := os.Hostname()
	r := &Report{
		Machine: Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), CPUModel: cpuModel(),
			GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, Hostname: host, LoadStart: loadAverage()},
		Settings: Settings{Concurrency: o.Concurrency, Requests: o.Requests, Chunks: o.Chunks, LongChunks: o.LongChunks,
			Keys: o.Keys, Conns: o.Conns, Rounds: o.Rounds, Network: o.Network},
		Problems: []string{},
	}
	if o.Requests == 0 {
		r.Settings.DurationSeconds = o.Duration.Seconds()
	}
	return r
}

func (r *Report) phase(server, scenario string) *Phase {
	for i := range r.Phases {
		if r.Phases[i].Server == server && r.Phases[i].Scenario == scenario {
			return &r.Phases[i]
		}
	}
	return nil
}

// conclude checks every phase and compares the servers.
func (r *Report) conclude() {
	for i := range r.Phases {
		p := &r.Phases[i]
		what := p.Server + " " + p.Scenario
		if p.Errors > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: a request failed: %s", what, p.FirstError))
		}
		if p.Requests == 0 {
			r.Problems = append(r.Problems, what+": no request completed")
		}
		if u := p.Usage; u != nil {
			// One record per request, with the provider's tokens: the load
			// went through authentication, routing, translation and
			// counting, not around them.
			if u.Records != p.Requests || u.Counted != p.Requests ||
				u.InputTokens != p.Requests*promptTokens || u.OutputTokens != p.Requests*p.expectTokens {
				r.Problems = append(r.Problems, fmt.Sprintf(
					"%s: %d requests but %d usage records (%d successful and provider-counted), %d input and %d output tokens; want %d and %d",
					what, p.Requests, u.Records, u.Counted, u.InputTokens, u.OutputTokens, p.Requests*promptTokens, p.Requests*p.expectTokens))
			}
		}
	}
	for _, sc := range []string{NonStreaming, Streaming, LongStreaming} {
		t, n := r.phase(ServerTollgate, sc), r.phase(ServerNoop, sc)
		if t == nil || n == nil || n.RequestsPerSecond == 0 {
			continue
		}
		c := Comparison{Scenario: sc, Chunks: t.Chunks, Throughput: t.RequestsPerSecond / n.RequestsPerSecond,
			CPURatio:             n.CPUPerRequestUs / t.CPUPerRequestUs,
			ExtraCPUPerRequestUs: t.CPUPerRequestUs - n.CPUPerRequestUs, ExtraAllocBytesPerRequest: t.AllocBytesPerRequest - n.AllocBytesPerRequest}
		if sc == NonStreaming {
			goal, met := ThroughputGoal, c.Throughput >= ThroughputGoal
			c.Goal, c.GoalMet = &goal, &met
		}
		r.Ratios = append(r.Ratios, c)
	}
	short, long := r.phase(ServerTollgate, Streaming), r.phase(ServerTollgate, LongStreaming)
	if short != nil && long != nil && short.Requests > 0 && long.Requests > 0 {
		m := &MemoryCheck{ShortChunks: r.Settings.Chunks, LongChunks: r.Settings.LongChunks,
			AllocBytesPerChunkShort: short.AllocBytesPerChunk, AllocBytesPerChunkLong: long.AllocBytesPerChunk,
			PeakLiveHeapShort: short.PeakLiveHeapBytes, PeakLiveHeapLong: long.PeakLiveHeapBytes,
			IfRetainedBytes: uint64(r.Settings.Concurrency) * uint64(max(long.Chunks-short.Chunks, 0)) * uint64(len(streamChunk))}
		m.AllowedGrowthBytes = max(m.IfRetainedBytes/4, 2<<20)
		if ns, nl := r.phase(ServerNoop, Streaming), r.phase(ServerNoop, LongStreaming); ns != nil && nl != nil {
			m.NoopPeakLiveHeapShort, m.NoopPeakLiveHeapLong = ns.PeakLiveHeapBytes, nl.PeakLiveHeapBytes
		}
		// Per request, fixed costs are spread over more chunks in the long
		// stream, so its per-chunk figure should be lower, never higher.
		m.Grows = m.AllocBytesPerChunkLong > 1.1*m.AllocBytesPerChunkShort ||
			m.PeakLiveHeapLong > m.PeakLiveHeapShort+m.AllowedGrowthBytes
		r.Memory = m
	}
}

// WriteText prints the report for people.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	m, s := r.Machine, r.Settings
	fmt.Fprintf(&b, "machine: %d CPUs (GOMAXPROCS %d)", m.CPUs, m.GOMAXPROCS)
	if m.CPUModel != "" {
		fmt.Fprintf(&b, ", %s", m.CPUModel)
	}
	fmt.Fprintf(&b, ", %s %s; load average %.2f at the start, %.2f at the end\n", m.GoVersion, m.OS, m.LoadStart, m.LoadEnd)
	over := "TCP on 127.0.0.1"
	if s.Network == "unix" {
		over = "a Unix socket"
	}
	fmt.Fprintf(&b, "load: concurrency %d, %d connections per server over %s, %d keys, ", s.Concurrency, s.Conns, over, s.Keys)
	if s.Requests > 0 {
		fmt.Fprintf(&b, "%d requests", s.Requests)
	} else {
		fmt.Fprintf(&b, "%gs", s.DurationSeconds)
	}
	fmt.Fprintf(&b, " per server and scenario in %d alternating rounds\n\n", s.Rounds)

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	// A tabwriter keeps write errors for Flush, which is checked.
	_, _ = fmt.Fprintln(tw, "scenario\tserver\trequests\treq/s\tp50\tp99\tmax\tCPU/req\tpeak RSS\talloc/req\talloc/chunk\tlive heap\theap in use\t")
	for _, p := range r.Phases {
		chunk := "-"
		if p.Scenario != NonStreaming {
			chunk = bytesOf(p.AllocBytesPerChunk)
		}
		rss := bytesOf(float64(p.PeakRSSBytes))
		if !p.PeakRSSOfPhase {
			rss += "*"
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.2fms\t%.2fms\t%.2fms\t%.0fµs\t%s\t%s\t%s\t%s\t%s\t\n",
			scenarioLabel(p.Scenario, p.Chunks), p.Server, p.Requests, p.RequestsPerSecond, p.P50Ms, p.P99Ms, p.MaxMs, p.CPUPerRequestUs,
			rss, bytesOf(p.AllocBytesPerRequest), chunk, bytesOf(float64(p.PeakLiveHeapBytes)), bytesOf(float64(p.PeakHeapInUseBytes)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("CPU/req and allocations are the whole process's: server and load generator. Live heap and heap in use are peaks.\n")
	for _, p := range r.Phases {
		if !p.PeakRSSOfPhase {
			b.WriteString("* peak RSS since the process started (this system cannot reset the high-water mark).\n")
			break
		}
	}

	if len(r.Ratios) > 0 {
		b.WriteString("\ntollgate against noop:\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, c := range r.Ratios {
			goal := ""
			if c.GoalMet != nil {
				verdict := "met"
				if !*c.GoalMet {
					verdict = "NOT met"
				}
				goal = fmt.Sprintf("goal ≥ %.0f%%: %s", *c.Goal*100, verdict)
			}
			_, _ = fmt.Fprintf(tw, "  %s\tthroughput %.1f%%\tCPU ratio %.1f%%\t+%.0fµs CPU/req\t+%s alloc/req\t%s\n",
				scenarioLabel(c.Scenario, c.Chunks), c.Throughput*100, c.CPURatio*100, c.ExtraCPUPerRequestUs, bytesOf(c.ExtraAllocBytesPerRequest), goal)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if mc := r.Memory; mc != nil {
		verdict := "does not grow with stream length"
		if mc.Grows {
			verdict = "GROWS with stream length"
		}
		fmt.Fprintf(&b, "\nmemory (tollgate), %d against %d chunks: %s: alloc/chunk %s and %s; peak live heap %s and %s",
			mc.ShortChunks, mc.LongChunks, verdict, bytesOf(mc.AllocBytesPerChunkShort), bytesOf(mc.AllocBytesPerChunkLong),
			bytesOf(float64(mc.PeakLiveHeapShort)), bytesOf(float64(mc.PeakLiveHeapLong)))
		if mc.NoopPeakLiveHeapLong > 0 {
			fmt.Fprintf(&b, " (noop: %s and %s)", bytesOf(float64(mc.NoopPeakLiveHeapShort)), bytesOf(float64(mc.NoopPeakLiveHeapLong)))
		}
		fmt.Fprintf(&b, ";\n  keeping the chunks would add %s to the live heap; %s growth is allowed\n",
			bytesOf(float64(mc.IfRetainedBytes)), bytesOf(float64(mc.AllowedGrowthBytes)))
	}
	var records, requests int64
	for _, p := range r.Phases {
		if p.Usage != nil {
			records, requests = records+p.Usage.Records, requests+p.Requests
		}
	}
	if requests > 0 {
		fmt.Fprintf(&b, "usage records (tollgate): %d for %d requests\n", records, requests)
	}
	if len(r.Problems) > 0 {
		b.WriteString("\nPROBLEMS:\n")
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "  - %s\n", p)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func scenarioLabel(sc string, chunks int) string {
	if sc == NonStreaming {
		return sc
	}
	return fmt.Sprintf("%s (%d chunks)", sc, chunks)
}

// bytesOf formats a byte count with a binary unit.
func bytesOf(n float64) string {
	switch {
	case n >= 1<<30 || n <= -(1<<30):
		return fmt.Sprintf("%.1fGiB", n/(1<<30))
	case n >= 1<<20 || n <= -(1<<20):
		return fmt.Sprintf("%.1fMiB", n/(1<<20))
	case n >= 1<<10 || n <= -(1<<10):
		return fmt.Sprintf("%.1fKiB", n/(1<<10))
	default:
		return fmt.Sprintf("%.0fB", n)
	}
}
