package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// loadInterval is how often the run samples the 1-minute load average.
const loadInterval = 5 * time.Second

// loadSampler records the 1-minute load average during the run, so that
// results can be read against how busy the machine was.
type loadSampler struct {
	mu      sync.Mutex
	samples []float64
}

// run samples until ctx ends.
func (l *loadSampler) run(ctx context.Context) {
	t := time.NewTicker(loadInterval)
	defer t.Stop()
	for {
		l.sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (l *loadSampler) sample() {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return
	}
	l.mu.Lock()
	l.samples = append(l.samples, v)
	l.mu.Unlock()
}

// String summarizes the samples: min, mean and max of the 1-minute load.
func (l *loadSampler) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.samples) == 0 {
		return "no samples"
	}
	lo, hi, sum := l.samples[0], l.samples[0], 0.0
	for _, v := range l.samples {
		lo, hi, sum = min(lo, v), max(hi, v), sum+v
	}
	return fmt.Sprintf("1-minute load average during the run: min %.2f, mean %.2f, max %.2f (%d samples, every %s)",
		lo, sum/float64(len(l.samples)), hi, len(l.samples), loadInterval)
}
