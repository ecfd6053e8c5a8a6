package scale

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Runtime metrics the monitor reads.
const (
	metricSchedLatencies = "/sched/latencies:seconds"
	metricGCCPU          = "/cpu/classes/gc/total:cpu-seconds"
)

// schedSample is how the harness process was scheduled during one
// interval of the monitor.
type schedSample struct {
	from, to time.Time
	// cpu is the CPU time its threads got and runqWait the time they were
	// runnable but waited for a CPU (/proc/self/task/*/schedstat), in
	// seconds summed over threads.
	cpu, runqWait float64
	// goWaits are the counts, by bucket, of the times goroutines waited
	// runnable before running (runtime/metrics' /sched/latencies:seconds,
	// which the runtime samples).
	goWaits []uint64
	gcCPU   float64 // CPU seconds of the garbage collector (estimate of the runtime)
	load1   float64
}

// schedMonitor samples the process' scheduling every second, so that a
// slow or failed connection can be set beside what the process got.
type schedMonitor struct {
	mu      sync.Mutex
	samples []schedSample
	buckets []float64
}

// schedReading is a cumulative reading.
type schedReading struct {
	at            time.Time
	cpu, runqWait float64
	goWaits       []uint64
	gcCPU         float64
}

func (m *schedMonitor) read() schedReading {
	r := schedReading{at: time.Now()}
	r.cpu, r.runqWait = threadSchedstat()
	ms := []rtmetrics.Sample{{Name: metricSchedLatencies}, {Name: metricGCCPU}}
	rtmetrics.Read(ms)
	if ms[0].Value.Kind() == rtmetrics.KindFloat64Histogram {
		h := ms[0].Value.Float64Histogram()
		r.goWaits = append([]uint64(nil), h.Counts...)
		m.mu.Lock()
		if m.buckets == nil {
			m.buckets = h.Buckets
		}
		m.mu.Unlock()
	}
	if ms[1].Value.Kind() == rtmetrics.KindFloat64 {
		r.gcCPU = ms[1].Value.Float64()
	}
	return r
}

// run samples every second until ctx ends.
func (m *schedMonitor) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	prev := m.read()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := m.read()
		s := schedSample{from: prev.at, to: cur.at, cpu: max(0, cur.cpu-prev.cpu), runqWait: max(0, cur.runqWait-prev.runqWait),
			gcCPU: cur.gcCPU - prev.gcCPU, load1: load1()}
		if len(cur.goWaits) == len(prev.goWaits) {
			s.goWaits = make([]uint64, len(cur.goWaits))
			for i := range cur.goWaits {
				s.goWaits[i] = cur.goWaits[i] - prev.goWaits[i]
			}
		}
		m.mu.Lock()
		m.samples = append(m.samples, s)
		m.mu.Unlock()
		prev = cur
	}
}

// SchedFigures are how the harness process (writers, caches, real
// clusters) was scheduled during a window, from its one-second samples.
type SchedFigures struct {
	Seconds float64 // covered by samples
	CPU     float64 // cores used
	// RunQueueWait is the time its threads waited, runnable, for a CPU,
	// per second (summed over threads: 2 means two threads waited the
	// whole time); RunQueueWaitMax the worst second's.
	RunQueueWait, RunQueueWaitMax float64
	// GoWaitP99 and GoWaitMax are goroutines' waits, runnable, before
	// they ran (the upper bound of the bucket).
	GoWaitP99, GoWaitMax time.Duration
	// GCCPU is the cores the garbage collector used (the runtime's
	// estimate, updated at the end of each cycle).
	GCCPU    float64
	Load1Max float64
}

// window returns the figures of the samples that overlap [from, to].
func (m *schedMonitor) window(from, to time.Time) SchedFigures {
	m.mu.Lock()
	defer m.mu.Unlock()
	var f SchedFigures
	var counts []uint64
	cpu, wait, gc := 0.0, 0.0, 0.0
	for _, s := range m.samples {
		if !s.to.After(from) || s.from.After(to) {
			continue
		}
		d := s.to.Sub(s.from).Seconds()
		f.Seconds += d
		cpu += s.cpu
		wait += s.runqWait
		gc += s.gcCPU
		f.RunQueueWaitMax = max(f.RunQueueWaitMax, s.runqWait/d)
		f.Load1Max = max(f.Load1Max, s.load1)
		if counts == nil {
			counts = make([]uint64, len(s.goWaits))
		}
		for i := range min(len(counts), len(s.goWaits)) {
			counts[i] += s.goWaits[i]
		}
	}
	if f.Seconds == 0 {
		return f
	}
	f.CPU, f.RunQueueWait, f.GCCPU = cpu/f.Seconds, wait/f.Seconds, gc/f.Seconds
	f.GoWaitP99, f.GoWaitMax = quantileBound(counts, m.buckets, 0.99), quantileBound(counts, m.buckets, 1)
	return f
}

// quantileBound returns the upper bound of the bucket holding the
// q-quantile of counts (the last finite bound for the open bucket).
func quantileBound(counts []uint64, buckets []float64, q float64) time.Duration {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 || len(buckets) != len(counts)+1 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= want && c > 0 {
			hi := buckets[i+1]
			if math.IsInf(hi, 1) {
				hi = buckets[i]
			}
			return time.Duration(hi * float64(time.Second))
		}
	}
	return 0
}

func (f SchedFigures) String() string {
	if f.Seconds == 0 {
		return "not sampled"
	}
	return fmt.Sprintf("%.2f cores (GC %.2f); threads waited for a CPU %.2f s per s (worst second %.2f); goroutines waited to run p99 ≤ %s, max ≤ %s; load1 up to %.1f",
		f.CPU, f.GCCPU, f.RunQueueWait, f.RunQueueWaitMax, roundDur(f.GoWaitP99), roundDur(f.GoWaitMax), f.Load1Max)
}

// short is String without the garbage collector's CPU, which the runtime
// updates only at the end of each cycle: over a few seconds it is mostly
// 0 or a whole cycle's.
func (f SchedFigures) short() string {
	if f.Seconds == 0 {
		return "not sampled"
	}
	return fmt.Sprintf("%.2f cores; threads waited for a CPU %.2f s per s (worst second %.2f); goroutines waited to run p99 ≤ %s, max ≤ %s; load1 up to %.1f",
		f.CPU, f.RunQueueWait, f.RunQueueWaitMax, roundDur(f.GoWaitP99), roundDur(f.GoWaitMax), f.Load1Max)
}

// roundDur rounds d to 3 significant figures or so.
func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(100 * time.Nanosecond)
}

// threadSchedstat sums the run and wait times of this process' threads
// (/proc/self/task/*/schedstat: ns on a CPU, ns runnable waiting for one,
// timeslices), in seconds; a thread that exited takes its share with it.
func threadSchedstat() (cpu, wait float64) {
	paths, _ := filepath.Glob("/proc/self/task/*/schedstat")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		run, _ := strconv.ParseFloat(f[0], 64)
		w, _ := strconv.ParseFloat(f[1], 64)
		cpu += run / 1e9
		wait += w / 1e9
	}
	return cpu, wait
}

// load1 is the one-minute load average (0 if unknown).
func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
