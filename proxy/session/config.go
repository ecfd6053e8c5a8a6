package session

import (
	"fmt"
	"time"

	"github.com/hashicorp/go-multierror"
)

// ALPN is the TLS application protocol that selects the session mode. A
// proxy that does not offer or accept it gets one connection per inner
// handshake, as before sessions existed.
const ALPN = "strait-session/1"

// Defaults of Config.
const (
	DefaultMaxStreams = 100
	// DefaultStreamsPerSession and DefaultMaxSessions spread the streams
	// of a key over up to 8 sessions, 8 streams each, before any session
	// carries more (see Config.StreamsPerSession).
	DefaultStreamsPerSession = 8
	DefaultMaxSessions       = 8
	DefaultIdleTimeout       = 30 * time.Second
	// DefaultRenewBefore is how long before either certificate of a
	// session expires it takes no new stream (a new session, with the
	// rotated SVIDs, takes them).
	DefaultRenewBefore = 30 * time.Second
	// DefaultMaxAge is how long a session takes new streams.
	DefaultMaxAge = 5 * time.Second
	// DefaultPingAfter and DefaultPingTimeout declare a silent session
	// dead after 6s: a false alarm kills every stream of the session, so
	// they leave room for a busy host (a 1s timeout reset delivered
	// requests in the failover suite at load average 60); new streams
	// leave a stalled session long before (Client.Stalled).
	DefaultPingAfter   = time.Second
	DefaultPingTimeout = 5 * time.Second
	// DefaultStreamWindow is the flow-control window of a stream in each
	// direction, large enough for bulk transfers over a WAN round trip.
	DefaultStreamWindow = 4 << 20
	// DefaultSessionWindow is the flow-control window of a whole session.
	DefaultSessionWindow = 16 << 20
)

// Config configures sessions, on either side. Every zero value means the
// documented default.
type Config struct {
	// MaxStreams caps the streams open at once on one session; a pool
	// opens another session when every session of a key is full. Zero
	// means DefaultMaxStreams.
	MaxStreams int
	// StreamsPerSession is how many streams a session of a key carries
	// before the pool opens another session for that key instead of
	// adding one, as long as the key has fewer than MaxSessions sessions;
	// past that, a new stream goes to the least loaded session (up to
	// MaxStreams). The streams of a session share one inner TLS
	// connection and its two HTTP/2 goroutines (one core at a time), one
	// tunnel stream through the gateways and one connection window: in
	// BenchmarkBulk (no gateways, load 20-25) 8 streams moved a median
	// 229 MB/s on one session, 302 at 2 per session, 343 at 1 and 403 on
	// 8 TLS connections. Spreading does not lower the CPU per byte
	// (2.1-2.5 ns in each, against 1.6-1.9 over TLS connections:
	// x/net/http2's copies), and more sessions batch less: with the
	// bench's 16 connections at a time (sessions phase, load 4-12), new
	// connections per CPU second were 4.0-4.4 times per-connection mode's
	// at 2 streams per session, 5.0 at 8, and 4.6-6.3 with one session
	// for all; through the gateways on 2 busy cores, iperf3's 8 streams
	// were no faster at 2 per session than on one session (0.90 and 0.935
	// of per-connection mode's, medians of 4 alternating pairs; 0.96 in
	// one run at 8). Hence 8: a
	// key spreads when its connections are many, not for every pair. A
	// session no longer needed (another session of its key has room)
	// closes after carrying no stream for a second. Zero means
	// DefaultStreamsPerSession; the server side ignores it.
	StreamsPerSession int
	// MaxSessions is how many sessions per key the pool opens to spread
	// streams (StreamsPerSession); a burst of new connections may open a
	// few more, and a key whose sessions are all full (MaxStreams) opens
	// another whatever their number. Zero means DefaultMaxSessions; the
	// server side ignores it.
	MaxSessions int
	// IdleTimeout closes a client session that has carried no stream for
	// that long. Zero means DefaultIdleTimeout. (The server side closes a
	// session idle for twice as long, a safety net: clients close first,
	// so that no stream races a server's close.)
	IdleTimeout time.Duration
	// RenewBefore stops new streams on a session this long before its own
	// or its peer's certificate expires, or at a quarter of the shorter
	// certificate's remaining lifetime if that is sooner. The session is
	// closed when the peer's certificate expires. Zero means
	// DefaultRenewBefore.
	RenewBefore time.Duration
	// MaxAge is how long after it opened a session takes new streams; it
	// closes once those it carries have ended. A session's destination
	// is the ingress gateway's choice when it opened: MaxAge bounds how
	// long new connections keep going there after the federation's
	// preferences change (a region back after a partition heals, a new
	// region order). It also bounds how long a session keeps going
	// through a draining gateway when the drain cannot be seen in etcd:
	// gateways' drain timeout must exceed it plus the longest request.
	// Zero means DefaultMaxAge.
	MaxAge time.Duration
	// Pipeline is how recently a session must have received a frame from
	// its peer for a new stream's first bytes to go out with the request
	// that opens it (one round trip to the answer). On a quieter session
	// they wait for the destination's answer (two round trips, as a new
	// handshake costs), so that a stream on a session whose path died
	// unnoticed fails with nothing sent and goes elsewhere. Zero means
	// two of the session's round trips, at least 50ms; negative means
	// never pipeline but a session's first stream (Pool.Add), which goes
	// out as the session's handshake completes: the handshake has just
	// proved the path, as a connection's own handshake does before its
	// first bytes in per-connection mode, so a new session costs what a
	// new connection does (two round trips), not three.
	//
	// The price of pipelining: when the path dies (a gateway SIGKILLed),
	// the streams opened until the session goes quiet, about half a round
	// trip (the peer's frames still in flight) plus Pipeline, have sent
	// their bytes, and none can be told apart from one whose request
	// reached the application and whose answer was lost, so they fail
	// (at most once) instead of going elsewhere: at 200 new connections/s
	// and 30ms RTT, 15 connections opened in the 80ms after the kill
	// failed in the failover suite. With Pipeline negative none failed
	// (two runs), and every new connection costs two round trips, as a
	// handshake does.
	Pipeline time.Duration
	// PingAfter is how long a session may go without receiving a frame
	// before it sends a PING; PingTimeout is how long that PING may go
	// unanswered before the session is closed as dead. Zero means
	// DefaultPingAfter and DefaultPingTimeout.
	PingAfter, PingTimeout time.Duration
	// StreamWindow and SessionWindow are the receive windows of the
	// server side (bytes). Zero means DefaultStreamWindow and
	// DefaultSessionWindow.
	StreamWindow, SessionWindow int32
}

func (c Config) withDefaults() Config {
	if c.MaxStreams == 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	if c.StreamsPerSession == 0 {
		c.StreamsPerSession = DefaultStreamsPerSession
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.RenewBefore == 0 {
		c.RenewBefore = DefaultRenewBefore
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.PingAfter == 0 {
		c.PingAfter = DefaultPingAfter
	}
	if c.PingTimeout == 0 {
		c.PingTimeout = DefaultPingTimeout
	}
	if c.StreamWindow == 0 {
		c.StreamWindow = DefaultStreamWindow
	}
	if c.SessionWindow == 0 {
		c.SessionWindow = DefaultSessionWindow
	}
	return c
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs *multierror.Error
	for _, n := range []struct {
		name string
		n    int
	}{{"max streams", c.MaxStreams}, {"streams per session", c.StreamsPerSession}, {"max sessions", c.MaxSessions}} {
		if n.n < 0 {
			errs = multierror.Append(errs, fmt.Errorf("session: %s %d is negative", n.name, n.n))
		}
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"idle timeout", c.IdleTimeout}, {"renew before", c.RenewBefore}, {"max age", c.MaxAge}, {"ping after", c.PingAfter}, {"ping timeout", c.PingTimeout}} {
		if d.d < 0 {
			errs = multierror.Append(errs, fmt.Errorf("session: %s %v is negative", d.name, d.d))
		}
	}
	if c.StreamWindow < 0 || c.SessionWindow < 0 {
		errs = multierror.Append(errs, fmt.Errorf("session: windows %d, %d: negative", c.StreamWindow, c.SessionWindow))
	}
	return errs.ErrorOrNil()
}
