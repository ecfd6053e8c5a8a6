package proxy

import (
	"sync"
	"sync/atomic"
)

// loadTracker counts outstanding connections per candidate address, for
// the power-of-two-choices pick among local endpoints.
type loadTracker struct {
	mu sync.Mutex
	n  map[string]*atomic.Int64
}

func (l *loadTracker) init() { l.n = map[string]*atomic.Int64{} }

func (l *loadTracker) counter(addr string) *atomic.Int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.n[addr]
	if !ok {
		c = new(atomic.Int64)
		l.n[addr] = c
	}
	return c
}

// outstanding is the number of open connections to addr.
func (l *loadTracker) outstanding(addr string) int64 { return l.counter(addr).Load() }

// acquire counts a connection to addr; the returned func releases it.
func (l *loadTracker) acquire(addr string) func() {
	c := l.counter(addr)
	c.Add(1)
	return func() { c.Add(-1) }
}
