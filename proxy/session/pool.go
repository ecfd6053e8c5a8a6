package session

import (
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Key names what sessions must not be shared across: the caller's
// identity, and the destination.
type Key struct {
	// Caller is the caller's SPIFFE ID: a session carries streams of the
	// identity that made its handshake only.
	Caller spiffeid.ID
	// Path and Addr are how the destination is reached (an endpoint
	// directly, or an egress gateway, by address); Name is what the
	// session's handshake asked for (service, namespace, cluster).
	Path, Addr, Name string
}

// Pool keeps the client sessions of a proxy by Key. It is safe for
// concurrent use.
type Pool struct {
	cfg    Config
	m      *Metrics
	mu     sync.Mutex
	byKey  map[Key][]*Client
	closed bool
}

// NewPool returns an empty pool. m may be nil.
func NewPool(cfg Config, m *Metrics) *Pool {
	return &Pool{cfg: cfg.withDefaults(), m: m, byKey: map[Key][]*Client{}}
}

// Config is the pool's configuration, with defaults, for NewClient.
func (p *Pool) Config() Config { return p.cfg }

// Metrics are the pool's metrics (possibly nil).
func (p *Pool) Metrics() *Metrics { return p.m }

// Open opens a stream to target on the least busy usable session of key
// whose peer allowed accepts, or returns nil when there is none (all
// full, retired or expiring): the caller then opens a session and Adds it.
// A session whose peer allowed no longer accepts is retired.
func (p *Pool) Open(key Key, target string, allowed func(spiffeid.ID) error) *Stream {
	p.mu.Lock()
	list := append([]*Client(nil), p.byKey[key]...)
	p.mu.Unlock()
	var best *Client
	for _, c := range list {
		if !c.Usable() {
			continue
		}
		if c.Stalled() {
			c.Retire()
			continue
		}
		if allowed != nil && allowed(c.peer) != nil {
			c.Retire()
			continue
		}
		if best == nil || c.active.Load() < best.active.Load() {
			best = c
		}
	}
	if best == nil || !best.reserve() {
		return nil
	}
	return best.open(target)
}

// Add pools c under key and opens a stream to target on it. A pool that
// is closed closes c and returns nil.
func (p *Pool) Add(key Key, c *Client, target string) *Stream {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = c.Close()
		return nil
	}
	p.byKey[key] = append(p.byKey[key], c)
	p.mu.Unlock()
	c.setOnClose(func() { p.remove(key, c) })
	c.active.Add(1) // the first stream's slot, whatever the cap
	return c.open(target)
}

func (p *Pool) remove(key Key, c *Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.byKey[key]
	for i, x := range list {
		if x == c {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(p.byKey, key)
	} else {
		p.byKey[key] = list
	}
}

// Sweep retires every pooled session for which retire returns true.
func (p *Pool) Sweep(retire func(Key, *Client) bool) {
	p.mu.Lock()
	var doomed []*Client
	for key, list := range p.byKey {
		for _, c := range list {
			if !c.retired.Load() && retire(key, c) {
				doomed = append(doomed, c)
			}
		}
	}
	p.mu.Unlock()
	for _, c := range doomed {
		c.Retire()
	}
}

// Len reports the sessions pooled under key.
func (p *Pool) Len(key Key) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.byKey[key])
}

// Close closes every session and makes Add close the ones it is given.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	var all []*Client
	for _, list := range p.byKey {
		all = append(all, list...)
	}
	p.mu.Unlock()
	for _, c := range all {
		_ = c.Close()
	}
}
