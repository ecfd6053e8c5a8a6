package session

import (
	"slices"
	"sync"
	"time"

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

// Open opens a stream to target on a usable session of key whose peer
// allowed accepts, or returns nil when the caller should open a session
// and Add it: when every such session carries StreamsPerSession streams
// or more and the key has fewer than MaxSessions usable sessions, or when
// none can take a stream (all full, retired or expiring). Of the
// sessions, it picks the one with the fewest streams, and among those the
// one that heard from its peer last (its stream's first bytes are likelier
// to go out with the request, Config.Pipeline). A session whose peer
// allowed no longer accepts is retired, as is a stalled one.
func (p *Pool) Open(key Key, target string, allowed func(spiffeid.ID) error) *Stream {
	return p.open(key, target, allowed, true)
}

// OpenExisting is Open without spreading: it opens a stream on the least
// loaded usable session of key with room (MaxStreams), or returns nil. It
// is for a caller whose new session, which Open asked for, failed to
// open: the stream goes where the pool would have put it before spreading
// (a session that may be as broken as the path that failed is left by
// the usual rules: Stalled, Retire).
func (p *Pool) OpenExisting(key Key, target string, allowed func(spiffeid.ID) error) *Stream {
	return p.open(key, target, allowed, false)
}

func (p *Pool) open(key Key, target string, allowed func(spiffeid.ID) error, spread bool) *Stream {
	p.mu.Lock()
	list := append([]*Client(nil), p.byKey[key]...)
	p.mu.Unlock()
	usable := list[:0]
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
		usable = append(usable, c)
	}
	for len(usable) > 0 {
		i := leastLoaded(usable)
		best := usable[i]
		if spread && best.Streams() >= p.cfg.StreamsPerSession && len(usable) < p.cfg.MaxSessions {
			return nil // spread: a new session takes the stream
		}
		if best.reserve() {
			return best.open(target, false)
		}
		usable = append(usable[:i], usable[i+1:]...) // full (or retired) meanwhile
	}
	return nil
}

// leastLoaded returns the index of the session of list with the fewest
// streams, and among those of the one that heard from its peer last.
func leastLoaded(list []*Client) int {
	best := 0
	for i, c := range list[1:] {
		b := list[best]
		if n, m := c.Streams(), b.Streams(); n < m || n == m && c.conn.sinceRead() < b.conn.sinceRead() {
			best = i + 1
		}
	}
	return best
}

// Add pools c under key and opens a stream to target on it, the session's
// first, whose bytes go out with its request whatever Config.Pipeline says:
// c's handshake has just proved the path. A pool that is closed closes c
// and returns nil.
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
	c.setOnIdle(func() { p.idle(key, c) })
	c.active.Add(1) // the first stream's slot, whatever the cap
	return c.open(target, true)
}

// extraIdle is how long a session of a key that has another usable
// session with room (fewer than StreamsPerSession streams) may carry no
// stream before it is closed: the sessions a burst of connections opened
// close soon after it, and one stays for the next connection.
const extraIdle = time.Second

// idle runs when the last stream of c, a session of key, has ended: it
// checks c again after extraIdle (retireIfExtra).
func (p *Pool) idle(key Key, c *Client) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosed {
		return
	}
	if c.idleTimer == nil {
		c.idleTimer = time.AfterFunc(extraIdle, func() { p.retireIfExtra(key, c) })
		return
	}
	c.idleTimer.Reset(extraIdle)
}

// retireIfExtra retires c if it has carried no stream for extraIdle and
// another usable session of key has room. The check and the retirement
// are one step under the pool's lock, so that of sessions idle together
// one stays.
func (p *Pool) retireIfExtra(key Key, c *Client) {
	now := time.Now()
	p.mu.Lock()
	extra := c.idleFor(now) >= extraIdle && c.Usable() && slices.ContainsFunc(p.byKey[key], func(o *Client) bool {
		return o != c && o.Usable() && o.Streams() < p.cfg.StreamsPerSession
	})
	if extra {
		c.retired.Store(true)
	}
	p.mu.Unlock()
	if extra {
		c.Retire() // closes it unless a stream took a slot meanwhile
	}
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
