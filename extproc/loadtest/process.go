package loadtest

import (
	"bufio"
	"bytes"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
)

// peakRSS is the process's resident set high-water mark (VmHWM), in bytes.
func peakRSS() (int64, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, false
			}
			return kb << 10, true
		}
	}
	return 0, false
}

// resetPeakRSS sets the high-water mark back to the current RSS (Linux
// 4.0+), so that each phase reports its own peak rather than the run's.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// cpuModel names the processor, for the report.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Runtime metrics read without stopping the world (runtime.ReadMemStats
// would, and a sampler calling it would disturb what it measures).
const (
	metricAllocBytes   = "/gc/heap/allocs:bytes"
	metricAllocObjects = "/gc/heap/allocs:objects"
	metricLiveHeap     = "/gc/heap/live:bytes"
	metricHeapObjects  = "/memory/classes/heap/objects:bytes"
	metricHeapUnused   = "/memory/classes/heap/unused:bytes"
)

type memSample struct {
	allocBytes, allocObjects uint64
	liveHeap                 uint64 // marked live by the last GC
	heapInUse                uint64 // MemStats.HeapInuse: objects and the free space of their spans
}

func readMem() memSample {
	s := []metrics.Sample{{Name: metricAllocBytes}, {Name: metricAllocObjects}, {Name: metricLiveHeap}, {Name: metricHeapObjects}, {Name: metricHeapUnused}}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() == metrics.KindUint64 {
			return s[i].Value.Uint64()
		}
		return 0
	}
	return memSample{allocBytes: v(0), allocObjects: v(1), liveHeap: v(2), heapInUse: v(3) + v(4)}
}

// heapWatch samples the heap while a phase runs and keeps the peaks.
type heapWatch struct {
	stop     chan struct{}
	done     sync.WaitGroup
	peakLive uint64
	peakUse  uint64
}

func watchHeap(every time.Duration) *heapWatch {
	w := &heapWatch{stop: make(chan struct{})}
	w.done.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			w.sample()
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	})
	return w
}

func (w *heapWatch) sample() {
	m := readMem()
	w.peakLive = max(w.peakLive, m.liveHeap)
	w.peakUse = max(w.peakUse, m.heapInUse)
}

// end stops sampling and returns the peaks.
func (w *heapWatch) end() (live, inUse uint64) {
	close(w.stop)
	w.done.Wait()
	w.sample()
	return w.peakLive, w.peakUse
}

// loadAverage is the 1-minute load average, or 0 where there is none.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(f, 64)
	return v
}
