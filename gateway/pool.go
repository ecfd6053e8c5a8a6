package gateway

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// Backoff of redials to a remote gateway after failures.
const (
	backoffBase = 100 * time.Millisecond
	backoffMax  = 10 * time.Second
)

// pool holds Config.ConnsPerRemoteGateway QUIC connections (shards) to each
// remote gateway, dialed on the gateway's transport. quic-go handles each
// connection's packets in one goroutine, so streams spread over several
// connections use several cores; each new stream goes to the connection
// with the fewest open streams.
//
// The first connection to a remote gateway is dialed lazily, by the first
// stream, and redialed with backoff while it fails. Once one is up, the
// others are dialed in the background, and each connection is checked,
// renewed and replaced on its own: one that dies leaves the streams of the
// others alone and is redialed while they carry the new streams. A
// connection that dies of an idle timeout or a stateless reset retires its
// siblings as well (they take no new stream, their streams finish): they
// share its UDP path and its peer, and are likely dead too. So does one
// the peer ends for its age or certificate (ConnErrReconnect): its
// siblings are about as old.
type pool struct {
	g      *Gateway
	shards int // connections per remote gateway
	mu     sync.Mutex
	peers  map[string]*peer // by cluster + "/" + id
	rr     atomic.Uint64
}

// peer is a remote gateway and the state of the connections to it.
type peer struct {
	cluster, id string
	seenRev     int64 // newest snapshot revision listing the peer; guarded by pool.mu

	mu      sync.Mutex
	rec     *straitv1.Gateway
	shards  []shard
	next    int           // where the search for the least-loaded connection starts: ties rotate
	dialEnd chan struct{} // closed (and replaced) whenever a dial ends
	// failures counts consecutive failures while no connection was up:
	// dials, and streams that found their connection dead. While they
	// last the peer is in backoff until retryAt.
	failures int
	retryAt  time.Time
	drained  bool // replied DRAINING or closed its connections draining; cleared when the record changes
	// connected is set once a dial to the peer succeeded: a dial after
	// that is a redial of a connection lost (or retired), while the
	// first one is not a sign of trouble (see rank).
	connected bool
	closed    bool // left the federation, or the pool closed: nothing is dialed any more
}

// shard is one connection slot of a peer.
type shard struct {
	conn    *pconn    // nil: none, or retired
	renewAt time.Time // when conn is replaced; zero: never
	limit   string    // what renewAt comes from, for logs
	dialing bool
	// failures and retryAt back off the redials of this slot while other
	// connections to the peer are up.
	failures int
	retryAt  time.Time
}

func newPool(g *Gateway) *pool {
	return &pool{g: g, shards: g.cfg.ConnsPerRemoteGateway, peers: map[string]*peer{}}
}

// peerFor returns the peer of a Gateway record found in the snapshot at
// revision rev, updating the record it dials. A changed address or identity
// retires the old connections.
func (p *pool) peerFor(rec *straitv1.Gateway, rev int64) *peer {
	key := rec.GetCluster() + "/" + rec.GetId()
	p.mu.Lock()
	pr, ok := p.peers[key]
	if !ok {
		pr = &peer{cluster: rec.GetCluster(), id: rec.GetId(), rec: rec, shards: make([]shard, p.shards), dialEnd: make(chan struct{})}
		p.peers[key] = pr
	}
	pr.seenRev = max(pr.seenRev, rev)
	p.mu.Unlock()
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if recordChanged(pr.rec, rec) {
		pr.retireAllLocked()
		pr.failures, pr.retryAt, pr.drained = 0, time.Time{}, false
		for i := range pr.shards {
			pr.shards[i].failures, pr.shards[i].retryAt = 0, time.Time{}
		}
	}
	pr.rec = rec
	return pr
}

// recordChanged reports whether a Gateway record names another instance: a
// restarted gateway writes a new started_at.
func recordChanged(old, cur *straitv1.Gateway) bool {
	return old.GetAddress() != cur.GetAddress() || old.GetSpiffeId() != cur.GetSpiffeId() ||
		!old.GetStartedAt().AsTime().Equal(cur.GetStartedAt().AsTime())
}

// drainedConn handles a DRAINING reply on c: the remote gateway drains as a
// whole, so every connection to it is retired, and the peer is chosen last
// until its record changes.
func (pr *peer) drainedConn(c *pconn) {
	pr.mu.Lock()
	pr.drained = true
	pr.retireAllLocked()
	pr.mu.Unlock()
	c.retire()
}

// retireAllLocked retires every connection of pr: they take no new stream
// and close once their streams have ended.
func (pr *peer) retireAllLocked() {
	for i := range pr.shards {
		if c := pr.shards[i].conn; c != nil {
			pr.shards[i].conn = nil
			c.retire()
		}
	}
}

// slotLocked returns the slot holding c, or -1.
func (pr *peer) slotLocked(c *pconn) int {
	for i := range pr.shards {
		if pr.shards[i].conn == c {
			return i
		}
	}
	return -1
}

// connsLocked returns the connections that take new streams.
func (pr *peer) connsLocked() []*pconn {
	var out []*pconn
	for i := range pr.shards {
		if c := pr.shards[i].conn; c != nil && c.alive() {
			out = append(out, c)
		}
	}
	return out
}

// upLocked reports whether a connection takes new streams.
func (pr *peer) upLocked() bool {
	for i := range pr.shards {
		if c := pr.shards[i].conn; c != nil && c.alive() {
			return true
		}
	}
	return false
}

// dialingLocked reports whether a dial to pr runs.
func (pr *peer) dialingLocked() bool {
	for i := range pr.shards {
		if pr.shards[i].dialing {
			return true
		}
	}
	return false
}

// loadLocked reports whether a connection to pr takes new streams and how
// many streams are open on all of them.
func (pr *peer) loadLocked() (up bool, streams int64) {
	for i := range pr.shards {
		if c := pr.shards[i].conn; c != nil && c.alive() {
			up = true
			streams += c.streams.Load()
		}
	}
	return up, streams
}

// leastLoadedLocked returns the live connection with the fewest open
// streams, ties taken in turn, or nil.
func (pr *peer) leastLoadedLocked() *pconn {
	var best *pconn
	n := len(pr.shards)
	for k := range n {
		c := pr.shards[(pr.next+k)%n].conn
		if c == nil || !c.alive() {
			continue
		}
		if best == nil || c.streams.Load() < best.streams.Load() {
			best = c
		}
	}
	if best != nil {
		pr.next = (best.shard + 1) % n
	}
	return best
}

// conn returns an established connection to pr, the least loaded one,
// dialing the first one if needed. Concurrent callers share one dial. The
// caller owns one stream count on the connection and must release it.
//
// The caller waits at most wait for a dial: past it, it gets
// ErrPeerConnecting and may try another candidate while the dial goes on
// for the next stream.
func (p *pool) conn(ctx context.Context, pr *peer, wait time.Duration) (*pconn, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		pr.mu.Lock()
		c, ended, err := p.pickLocked(ctx, pr)
		pr.mu.Unlock()
		if c != nil || err != nil {
			return c, err
		}
		select {
		case <-ended:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			return nil, fmt.Errorf("%w: %s/%s", ErrPeerConnecting, pr.cluster, pr.id)
		}
		pr.mu.Lock()
		failed := !pr.upLocked() && !pr.dialingLocked() && pr.failures > 0
		pr.mu.Unlock()
		if failed {
			return nil, fmt.Errorf("%w: %s/%s", ErrPeerBackoff, pr.cluster, pr.id)
		}
	}
}

// pickLocked returns the least-loaded live connection of pr with a stream
// counted on it, and dials the empty slots in the background. Without
// one, it returns a channel closed when a dial ends (starting the dial if
// none runs), or the reason no dial may start.
func (p *pool) pickLocked(ctx context.Context, pr *peer) (*pconn, <-chan struct{}, error) {
	now := p.g.cfg.Now()
	p.checkLocked(pr, now)
	if c := pr.leastLoadedLocked(); c != nil {
		c.acquire()
		p.fillLocked(ctx, pr, now)
		return c, nil, nil
	}
	switch {
	case pr.dialingLocked():
		return nil, pr.dialEnd, nil
	case pr.closed:
		return nil, nil, fmt.Errorf("gateway: remote gateway %s/%s left the federation", pr.cluster, pr.id)
	case pr.failures > 0 && now.Before(pr.retryAt):
		return nil, nil, fmt.Errorf("%w: %s/%s", ErrPeerBackoff, pr.cluster, pr.id)
	}
	// One dial at a time while the peer is down: its backoff, not the
	// number of slots, paces the attempts.
	p.startDialLocked(ctx, pr, 0)
	return nil, pr.dialEnd, nil
}

// checkLocked empties the slots of connections found closed and retires
// those due for renewal (a certificate nears expiry, or the maximum age):
// their streams finish on them, new ones go elsewhere.
func (p *pool) checkLocked(pr *peer, now time.Time) {
	for i := range pr.shards {
		s := &pr.shards[i]
		switch {
		case s.conn == nil:
		case s.conn.Context().Err() != nil:
			p.lostLocked(pr, i, now)
		case !s.renewAt.IsZero() && !now.Before(s.renewAt):
			p.g.log.Info("gateway: replacing connection to remote gateway", logPeerCluster, pr.cluster, logPeer, pr.id, logConn, i, logLimit, s.limit)
			s.conn.retire()
			s.conn = nil
		}
	}
}

// lostLocked empties slot i, whose connection closed, and reports whether
// that was a failure: not when the peer asked for a new connection (its
// certificate or the connection's age), nor when this gateway closed it,
// nor when the peer closed it at the end of its drain.
func (p *pool) lostLocked(pr *peer, i int, now time.Time) bool {
	c := pr.shards[i].conn
	pr.shards[i].conn = nil
	cause := context.Cause(c.Context())
	switch {
	case isReconnect(cause):
		pr.retireAllLocked()
		return false
	case closedLocally(cause):
		return false
	case closedDraining(cause):
		pr.drained = true
		pr.retireAllLocked()
		return false
	}
	if sharedFate(cause) {
		pr.retireAllLocked()
	}
	p.g.m.peerFailures.WithLabelValues(pr.cluster, pr.id).Inc()
	p.g.links.failed(pr.cluster, pr.id, cause, now)
	p.g.log.Warn("gateway: connection to remote gateway lost", logPeerCluster, pr.cluster, logPeer, pr.id, logConn, i,
		logConns, len(pr.connsLocked()), logErr, cause)
	return true
}

// closedLocally reports whether this gateway closed the connection (a
// retired connection, the pool's close, the transport's).
func closedLocally(cause error) bool {
	var ae *quic.ApplicationError
	return (errors.As(cause, &ae) && !ae.Remote) || errors.Is(cause, quic.ErrTransportClosed)
}

// closedDraining reports whether the peer closed the connection at the end
// of its drain.
func closedDraining(cause error) bool {
	var ae *quic.ApplicationError
	return errors.As(cause, &ae) && ae.Remote && ae.ErrorCode == ConnErrDraining
}

// sharedFate reports whether a connection died in a way that its siblings
// share: an idle timeout (the path, one UDP socket pair for all of them, or
// the peer went silent) or a stateless reset (the peer lost its state).
func sharedFate(cause error) bool {
	var idle *quic.IdleTimeoutError
	var reset *quic.StatelessResetError
	return errors.As(cause, &idle) || errors.As(cause, &reset)
}

// fillLocked dials, in the background, the empty slots of a peer that has
// a connection up (and is neither draining nor gone), except those backing
// off after a failure.
func (p *pool) fillLocked(ctx context.Context, pr *peer, now time.Time) {
	if pr.closed || pr.drained || !pr.upLocked() {
		return
	}
	for i := range pr.shards {
		s := &pr.shards[i]
		if s.conn != nil || s.dialing || (s.failures > 0 && now.Before(s.retryAt)) {
			continue
		}
		p.startDialLocked(ctx, pr, i)
	}
}

// startDialLocked dials slot i of pr in the background.
func (p *pool) startDialLocked(ctx context.Context, pr *peer, i int) {
	pr.shards[i].dialing = true
	rec := pr.rec
	p.g.wg.Go(func() { p.dial(ctx, pr, i, rec) })
}

// dial connects slot i of pr to rec and publishes the result. ctx is the
// gateway's run context: a dial is shared, no single caller may cancel it.
func (p *pool) dial(ctx context.Context, pr *peer, i int, rec *straitv1.Gateway) {
	// The SVID presented is this one or, rotated during the dial, a later
	// one: renewing by this one's expiry is never late.
	var own *x509.Certificate
	if svid, err := p.g.cfg.SVIDs.GetX509SVID(); err == nil && len(svid.Certificates) > 0 {
		own = svid.Certificates[0]
	}
	dialed := p.g.cfg.Now()
	c, err := p.dialRecord(ctx, rec)
	pr.mu.Lock()
	defer pr.mu.Unlock()
	defer func() {
		close(pr.dialEnd)
		pr.dialEnd = make(chan struct{})
	}()
	s := &pr.shards[i]
	s.dialing = false
	now := p.g.cfg.Now()
	if err != nil {
		lead := !pr.upLocked() && !pr.dialingLocked()
		failures, retryAt := pr.noteDialFailureLocked(s, lead, now)
		if lead {
			p.g.m.peerUp.WithLabelValues(pr.cluster, pr.id).Set(0)
		}
		p.g.m.peerFailures.WithLabelValues(pr.cluster, pr.id).Inc()
		p.g.links.failed(pr.cluster, pr.id, err, now)
		p.g.log.Warn("gateway: dial remote gateway failed", logPeerCluster, pr.cluster, logPeer, pr.id, logPeerAddr, rec.GetAddress(), logConn, i,
			logFailures, failures, logRetryIn, retryAt.Sub(now).Round(time.Millisecond), logErr, err)
		return
	}
	if pr.closed || recordChanged(rec, pr.rec) {
		// The gateway left, or restarted, during the dial.
		_ = c.CloseWithError(ConnErrGone, "the remote gateway's record changed")
		return
	}
	s.conn, s.failures, pr.failures, pr.connected = &pconn{Conn: c, shard: i}, 0, 0, true
	var peerCert *x509.Certificate
	if certs := c.ConnectionState().TLS.PeerCertificates; len(certs) > 0 {
		peerCert = certs[0]
	}
	maxAge, _ := p.g.connLimits()
	s.renewAt, s.limit = poolRenewAt(dialed, own, peerCert, maxAge)
	p.g.m.peerUp.WithLabelValues(pr.cluster, pr.id).Set(1)
	p.g.log.Info("gateway: connected to remote gateway", logPeerCluster, pr.cluster, logPeer, pr.id, logPeerAddr, rec.GetAddress(), logConn, i)
	p.fillLocked(ctx, pr, now)
}

// noteDialFailureLocked backs off after a failed dial of slot s: the peer's
// backoff when no other connection is up or being dialed (lead), else the
// slot's alone. It returns the failures counted and the next attempt.
func (pr *peer) noteDialFailureLocked(s *shard, lead bool, now time.Time) (int, time.Time) {
	if lead {
		pr.noteFailureLocked(now)
		return pr.failures, pr.retryAt
	}
	s.failures++
	s.retryAt = now.Add(backoff(s.failures))
	return s.failures, s.retryAt
}

func (p *pool) dialRecord(ctx context.Context, rec *straitv1.Gateway) (*quic.Conn, error) {
	id, err := recordPeerID(rec)
	if err != nil {
		return nil, err
	}
	addr, err := net.ResolveUDPAddr("udp", rec.GetAddress())
	if err != nil {
		return nil, fmt.Errorf("gateway: remote gateway address %q: %w", rec.GetAddress(), err)
	}
	tlsConf, err := p.g.clientTLS(id)
	if err != nil {
		return nil, err
	}
	live := p.g.liveNow()
	ctx, cancel := context.WithTimeout(ctx, live.dial)
	defer cancel()
	c, err := p.g.transport.Dial(ctx, addr, tlsConf, live.quicConfig(false, p.g.cfg.HandshakeTimeout))
	if err != nil {
		return nil, fmt.Errorf("gateway: dial %s at %s: %w", id, addr, err)
	}
	return c, nil
}

// noteFailureLocked counts a failure of the peer and schedules its next
// dial with exponential backoff and jitter.
func (pr *peer) noteFailureLocked(now time.Time) {
	pr.failures++
	pr.retryAt = now.Add(backoff(pr.failures))
}

// backoff is the wait after n consecutive failures: exponential from
// backoffBase up to backoffMax, with jitter.
func backoff(n int) time.Duration {
	d := min(backoffBase<<min(n-1, 16), backoffMax)
	return d/2 + rand.N(d/2+1)
}

// noteStreamFailure records a stream that failed before any byte came back
// for a reason other than a refusal; a dead connection is dropped, and
// when it was the peer's last one the peer backs off.
func (p *pool) noteStreamFailure(pr *peer, c *pconn) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	i := pr.slotLocked(c)
	if i < 0 || c.Context().Err() == nil {
		return
	}
	now := p.g.cfg.Now()
	if p.lostLocked(pr, i, now) && !pr.upLocked() && !pr.dialingLocked() {
		pr.noteFailureLocked(now)
		p.g.m.peerUp.WithLabelValues(pr.cluster, pr.id).Set(0)
	}
}

// reconnect drops c, which its peer asked to replace (isReconnect), and
// retires its siblings: the peer ends connections at its maximum age or
// at the expiry of the certificate they were dialed with, so siblings
// dialed about when c was are at or past the same deadline, and a stream
// retried on one of them would be refused again. The next stream dials a
// new connection, and no failure is counted.
func (p *pool) reconnect(pr *peer, c *pconn) {
	pr.mu.Lock()
	pr.retireAllLocked()
	pr.mu.Unlock()
	c.retire()
}

// prune closes the connections of gateways that left the snapshot. A peer
// seen in a newer snapshot than snap is kept: the watch loop may prune with
// a snapshot older than the one a connection was routed by.
func (p *pool) prune(snap *federation.Snapshot) {
	live := map[string]bool{}
	for _, c := range snap.Clusters() {
		for _, gw := range snap.Gateways(c) {
			live[gw.GetCluster()+"/"+gw.GetId()] = true
		}
	}
	p.mu.Lock()
	var gone []*peer
	for key, pr := range p.peers {
		if !live[key] && pr.seenRev <= snap.Revision() {
			gone = append(gone, pr)
			delete(p.peers, key)
		}
	}
	p.mu.Unlock()
	for _, pr := range gone {
		p.closePeer(pr)
	}
}

// closePeer retires pr's connections: they close once their streams have
// finished, since a gateway that withdrew its record is draining.
func (p *pool) closePeer(pr *peer) {
	pr.mu.Lock()
	pr.closed = true
	pr.retireAllLocked()
	pr.mu.Unlock()
	p.g.m.peerUp.DeleteLabelValues(pr.cluster, pr.id)
	p.g.m.peerRTT.DeleteLabelValues(pr.cluster, pr.id)
	p.g.m.peerFailures.DeleteLabelValues(pr.cluster, pr.id)
	p.g.m.peerConns.DeleteLabelValues(pr.cluster, pr.id)
	p.g.m.connStreams.DeletePartialMatch(map[string]string{"peer_cluster": pr.cluster, "peer": pr.id})
	p.g.links.remove(pr.cluster, pr.id)
}

// close closes every connection at once.
func (p *pool) close(code quic.ApplicationErrorCode, msg string) {
	p.mu.Lock()
	peers := p.peers
	p.peers = map[string]*peer{}
	p.mu.Unlock()
	for _, pr := range peers {
		pr.mu.Lock()
		pr.closed = true
		for i := range pr.shards {
			if c := pr.shards[i].conn; c != nil {
				_ = c.CloseWithError(code, msg)
			}
		}
		pr.mu.Unlock()
	}
}

// sample checks every peer's connections (emptying the slots of closed
// ones and dialing them again while a sibling is up), and publishes their
// liveness, RTT and streams. ctx is the gateway's run context.
func (p *pool) sample(ctx context.Context) {
	p.mu.Lock()
	peers := make([]*peer, 0, len(p.peers))
	for _, pr := range p.peers {
		peers = append(peers, pr)
	}
	p.mu.Unlock()
	for _, pr := range peers {
		pr.mu.Lock()
		now := p.g.cfg.Now()
		p.checkLocked(pr, now)
		p.fillLocked(ctx, pr, now)
		conns, addr := pr.connsLocked(), pr.rec.GetAddress()
		streams := make([]int64, len(pr.shards))
		for i := range pr.shards {
			if c := pr.shards[i].conn; c != nil {
				streams[i] = c.streams.Load()
			}
		}
		pr.mu.Unlock()
		p.g.links.sample(pr.cluster, pr.id, addr, conns, now)
		if len(conns) > 0 {
			var rtt time.Duration
			for _, c := range conns {
				rtt += c.ConnectionStats().SmoothedRTT
			}
			p.g.m.peerRTT.WithLabelValues(pr.cluster, pr.id).Set((rtt / time.Duration(len(conns))).Seconds())
		}
		p.g.m.peerUp.WithLabelValues(pr.cluster, pr.id).Set(b2f(len(conns) > 0))
		p.g.m.peerConns.WithLabelValues(pr.cluster, pr.id).Set(float64(len(conns)))
		for i, n := range streams {
			p.g.m.connStreams.WithLabelValues(pr.cluster, pr.id, strconv.Itoa(i)).Set(float64(n))
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
