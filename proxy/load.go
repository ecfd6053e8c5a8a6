package proxy

import (
	"sync"
	"sync/atomic"
)

// loadTracker counts outstanding connections per candidate address, for
// the power-of-two-choices pick among local endpoints. An address is
// forgotten when its count returns to zero, so the table holds only
// addresses with open connections.
type loadTracker struct {
	mu sync.Mutex
	n  map[string]*atomic.Int64
}

func (l *loadTracker) init() { l.n = map[string]*atomic.Int64{} }

// outstanding is the number of open connections to addr.
func (l *loadTracker) outstanding(addr string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.n[addr]; ok {
		return c.Load()
	}
	return 0
}

// acquire counts a connection to addr; the returned func releases it and
// must be called once.
func (l *loadTracker) acquire(addr string) func() {
	l.mu.Lock()
	c, ok := l.n[addr]
	if !ok {
		c = new(atomic.Int64)
		l.n[addr] = c
	}
	c.Add(1)
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if c.Add(-1) == 0 && l.n[addr] == c {
			delete(l.n, addr)
		}
	}
}

// size is the number of addresses tracked.
func (l *loadTracker) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.n)
}
