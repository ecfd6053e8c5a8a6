package session

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/net/http2"
)

// Client is the caller's side of one session: an inner mTLS connection
// that negotiated ALPN, carrying streams (Open). It is safe for concurrent
// use.
type Client struct {
	cfg  Config
	m    *Metrics
	cc   *http2.ClientConn
	conn *watchedConn
	peer spiffeid.ID
	// minRTT is the session's round trip: the shortest of its handshake
	// and of its streams' answers (nanoseconds; see Stream.Retryable).
	minRTT atomic.Int64
	// pending are the streams waiting for their answer, by when they
	// were opened.
	pendMu  sync.Mutex
	pending map[*Stream]time.Time
	// probeCur is the probe in flight, if any (probe); aliveAt is when
	// the last probe whose PING was answered sent it (UnixNano).
	probeMu  sync.Mutex
	probeCur *probing
	aliveAt  atomic.Int64
	// opened is when the session was made; renewAt is when it stops
	// taking streams.
	opened, renewAt time.Time
	// expiry closes the session at the peer's certificate expiry; renew
	// retires it at renewAt.
	expiry, renew *time.Timer

	active  atomic.Int64 // streams reserved or open
	total   atomic.Int64 // streams opened in the session's life
	retired atomic.Bool
	// idleSince is when the last stream ended (UnixNano; when the session
	// opened if none has).
	idleSince atomic.Int64
	mu        sync.Mutex
	// onClose runs once when the session's connection closes; onIdle
	// runs each time its last stream ends (Pool.Add sets them).
	onClose, onIdle func()
	// idleTimer checks the session after it went idle (Pool.idle).
	idleTimer *time.Timer
	isClosed  bool
}

// setOnIdle makes f run each time the session's last stream ends.
func (c *Client) setOnIdle(f func()) {
	c.mu.Lock()
	c.onIdle = f
	c.mu.Unlock()
}

// setOnClose makes f run when the session closes, or now if it has.
func (c *Client) setOnClose(f func()) {
	c.mu.Lock()
	if !c.isClosed {
		c.onClose = f
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	f()
}

// NewClient starts the client side of a session on conn, whose handshake
// has completed and negotiated ALPN (ErrNoALPN otherwise). rtt is how long
// the handshake took; ownNotAfter is when the caller's own certificate
// expires. The session closes when the peer's certificate expires, and
// takes no stream from RenewBefore earlier (see Config). m may be nil.
func NewClient(conn *tls.Conn, cfg Config, m *Metrics, rtt time.Duration, ownNotAfter time.Time) (*Client, error) {
	cfg = cfg.withDefaults()
	state := conn.ConnectionState()
	if state.NegotiatedProtocol != ALPN {
		return nil, ErrNoALPN
	}
	if len(state.PeerCertificates) == 0 {
		return nil, fmt.Errorf("session: peer presented no certificate")
	}
	leaf := state.PeerCertificates[0]
	peer, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("session: peer certificate: %w", err)
	}
	c := &Client{cfg: cfg, m: m, peer: peer, pending: map[*Stream]time.Time{}}
	c.minRTT.Store(int64(rtt))
	c.idleSince.Store(time.Now().UnixNano())
	c.conn = newWatchedConn(conn, c.closed)
	t := &http2.Transport{
		IdleConnTimeout:            cfg.IdleTimeout,
		ReadIdleTimeout:            cfg.PingAfter,
		PingTimeout:                cfg.PingTimeout,
		StrictMaxConcurrentStreams: true,
	}
	m.sessionOpened(SideClient)
	cc, err := t.NewClientConn(c.conn)
	if err != nil {
		_ = c.conn.Close()
		return nil, fmt.Errorf("session: %w", err)
	}
	c.cc = cc
	now := time.Now()
	c.opened = now
	c.renewAt = renewAt(now, leaf.NotAfter, ownNotAfter, cfg.RenewBefore)
	if end := now.Add(cfg.MaxAge); end.Before(c.renewAt) {
		c.renewAt = end
	}
	c.mu.Lock()
	if !c.isClosed {
		c.expiry = time.AfterFunc(leaf.NotAfter.Sub(now), func() { _ = c.Close() })
		// Past renewAt the session takes no stream; it closes once the
		// ones it carries have ended.
		c.renew = time.AfterFunc(c.renewAt.Sub(now), c.Retire)
	}
	c.mu.Unlock()
	return c, nil
}

// renewAt is when a session whose certificates expire at a and b stops
// taking streams: renew before the sooner, or at three quarters of the
// remaining lifetime if that comes first.
func renewAt(now, a, b time.Time, before time.Duration) time.Time {
	end := a
	if !b.IsZero() && b.Before(end) {
		end = b
	}
	if left := end.Sub(now); before > left/4 {
		before = left / 4
	}
	return end.Add(-before)
}

// Peer is the SPIFFE ID the destination's certificate names.
func (c *Client) Peer() spiffeid.ID { return c.peer }

// Opened is when the session was made.
func (c *Client) Opened() time.Time { return c.opened }

// RTT is the session's round trip: the shortest of its handshake's time
// and of its streams' times to their answers.
func (c *Client) RTT() time.Duration { return time.Duration(c.minRTT.Load()) }

// observeRTT lowers the round-trip estimate to d if it is shorter.
func (c *Client) observeRTT(d time.Duration) {
	for {
		cur := c.minRTT.Load()
		if int64(d) >= cur || c.minRTT.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// stallAfter is how long a stream may wait for its answer before its
// session counts as stalled: three round trips, and at least
// minStallAfter.
func (c *Client) stallAfter() time.Duration { return max(3*c.RTT(), minStallAfter) }

// probeTimeout is how long a probe's PING may go unanswered before the
// session's held streams give up (ErrStalled): four round trips, and at
// least minProbeTimeout.
func (c *Client) probeTimeout() time.Duration { return max(4*c.RTT(), minProbeTimeout) }

// minProbeTimeout is the least time a probe waits for its PING's answer.
// A false alarm sends every held stream of the session to a new
// handshake, which on a busy host makes the next alarm likelier: at 250ms
// and load average 30-37, the failover suite's client gave up 843 and
// 1,733 held streams, most of them with no fault on their path. A true
// one costs the streams held on a dead session that long.
const minProbeTimeout = time.Second

// probing is a PING in flight (Client.probe); ok is set before done closes.
type probing struct {
	done chan struct{}
	ok   bool
}

// probe sends a PING on the session, or joins the one in flight, and
// reports through the result whether its answer came within probeTimeout.
func (c *Client) probe() *probing {
	c.probeMu.Lock()
	defer c.probeMu.Unlock()
	if c.probeCur != nil {
		return c.probeCur
	}
	p := &probing{done: make(chan struct{})}
	c.probeCur = p
	go func() {
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), c.probeTimeout())
		err := c.cc.Ping(ctx)
		cancel()
		if err == nil {
			c.aliveAt.Store(sent.UnixNano())
		}
		c.probeMu.Lock()
		p.ok = err == nil
		c.probeCur = nil
		c.probeMu.Unlock()
		close(p.done)
	}()
	return p
}

// minStallAfter is the least time a session is given to answer a stream
// before it counts as stalled (scheduling on a busy host; a false alarm
// costs one handshake).
const minStallAfter = 100 * time.Millisecond

// fresh reports whether the session heard from its peer recently enough
// for a new stream's first bytes to go out with its request (see
// Config.Pipeline).
func (c *Client) fresh() bool {
	w := c.cfg.Pipeline
	switch {
	case w < 0:
		return false
	case w == 0:
		w = max(2*c.RTT(), minPipeline)
	}
	return c.conn.sinceRead() < w
}

// minPipeline is the least of the default Config.Pipeline.
const minPipeline = 50 * time.Millisecond

// Stalled reports whether a stream has waited for its answer longer than
// stallAfter while the session heard nothing from its peer since that
// stream opened (no frame, no answer to a probe's PING): the path may be
// dead (a SIGKILLed gateway, a partition), and new streams should go to a
// new session. A session that keeps receiving is slow, not dead: on a busy
// host, retiring it would only add handshakes. The waiting streams stay:
// they end with their answer, or give up (held ones, see
// Config.Pipeline), or end with the session (PingTimeout).
func (c *Client) Stalled() bool {
	limit := time.Now().Add(-c.stallAfter())
	heard := c.conn.lastRead()
	if alive := time.Unix(0, c.aliveAt.Load()); alive.After(heard) {
		heard = alive
	}
	c.pendMu.Lock()
	defer c.pendMu.Unlock()
	for _, t := range c.pending {
		if t.Before(limit) && !heard.After(t) {
			return true
		}
	}
	return false
}

// Streams reports the streams reserved or open now.
func (c *Client) Streams() int { return int(c.active.Load()) }

// Usable reports whether the session may take a new stream now.
func (c *Client) Usable() bool {
	return !c.retired.Load() && time.Now().Before(c.renewAt) && c.cc.CanTakeNewRequest()
}

// reserve takes a stream slot if the session is usable and not full.
// The slot is taken before retired is read again, and Retire sets retired
// before it reads active: a session retired meanwhile either sees the
// slot (and closes when it is released) or is seen here (and the slot is
// given back), so that no stream starts on a session Retire closed.
func (c *Client) reserve() bool {
	if !c.Usable() {
		return false
	}
	if c.active.Add(1) > int64(c.cfg.MaxStreams) || c.retired.Load() {
		c.release()
		return false
	}
	return true
}

func (c *Client) release() {
	if c.active.Add(-1) != 0 {
		return
	}
	if c.retired.Load() {
		_ = c.Close()
		return
	}
	c.idleSince.Store(time.Now().UnixNano())
	c.mu.Lock()
	onIdle := c.onIdle
	c.mu.Unlock()
	if onIdle != nil {
		onIdle()
	}
}

// idleFor reports how long the session has carried no stream (zero while
// it carries one).
func (c *Client) idleFor(now time.Time) time.Duration {
	if c.active.Load() > 0 {
		return 0
	}
	return now.Sub(time.Unix(0, c.idleSince.Load()))
}

// Retire stops the session from taking streams; it closes once the
// streams it carries have ended. A pool retires a session that failed a
// stream, so that the next attempt opens a new one (through which the
// ingress may pick another endpoint).
func (c *Client) Retire() {
	c.retired.Store(true)
	if c.active.Load() == 0 {
		_ = c.Close()
	}
}

// Close closes the session and every stream it carries.
func (c *Client) Close() error {
	c.retired.Store(true)
	return c.cc.Close()
}

// closed runs once when the connection closes, whoever closed it.
func (c *Client) closed() {
	c.retired.Store(true)
	c.m.sessionClosed(SideClient, c.total.Load())
	c.mu.Lock()
	c.isClosed = true
	if c.expiry != nil {
		c.expiry.Stop()
		c.renew.Stop()
	}
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	f := c.onClose
	c.mu.Unlock()
	if f != nil {
		f()
	}
}

// goneAway reports whether the peer sent GOAWAY (or the session is closing
// by itself) while its connection is still open: a stream that failed then
// was one the peer never processed.
func (c *Client) goneAway() bool {
	st := c.cc.State()
	return st.Closing && !st.Closed && !c.retired.Load()
}

// watchedConn records when its last read returned data and calls
// onClosed once when it is closed.
type watchedConn struct {
	net.Conn
	base     time.Time
	last     atomic.Int64 // nanoseconds since base
	once     sync.Once
	onClosed func()
}

func newWatchedConn(c net.Conn, onClosed func()) *watchedConn {
	return &watchedConn{Conn: c, base: time.Now(), onClosed: onClosed}
}

func (w *watchedConn) Read(b []byte) (int, error) {
	n, err := w.Conn.Read(b)
	if n > 0 {
		w.last.Store(int64(time.Since(w.base)))
	}
	return n, err
}

// lastRead is when the last read returned data (when the connection was
// made if none has).
func (w *watchedConn) lastRead() time.Time {
	return w.base.Add(time.Duration(w.last.Load()))
}

// sinceRead is how long ago the last read returned data.
func (w *watchedConn) sinceRead() time.Duration {
	return time.Since(w.base) - time.Duration(w.last.Load())
}

func (w *watchedConn) Close() error {
	err := w.Conn.Close()
	w.once.Do(w.onClosed)
	return err
}
