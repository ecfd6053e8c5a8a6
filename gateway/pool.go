package gateway

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net"
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

// pool holds one QUIC connection per remote gateway, dialed lazily on the
// gateway's transport and redialed with backoff.
type pool struct {
	g     *Gateway
	mu    sync.Mutex
	peers map[string]*peer // by cluster + "/" + id
	rr    atomic.Uint64
}

// peer is a remote gateway and the state of the connection to it.
type peer struct {
	cluster, id string
	seenRev     int64 // newest snapshot revision listing the peer; guarded by pool.mu

	mu       sync.Mutex
	rec      *straitv1.Gateway
	conn     *pconn
	renewAt  time.Time     // when conn is replaced; zero: never
	limit    string        // what renewAt comes from, for logs
	dialing  chan struct{} // non-nil while a dial runs; closed when it ends
	failures int           // consecutive dial or stream failures
	retryAt  time.Time
	drained  bool // replied DRAINING; cleared when the record changes
}

func newPool(g *Gateway) *pool { return &pool{g: g, peers: map[string]*peer{}} }

// peerFor returns the peer of a Gateway record found in the snapshot at
// revision rev, updating the record it dials. A changed address or identity closes the old connection.
func (p *pool) peerFor(rec *straitv1.Gateway, rev int64) *peer {
	key := rec.GetCluster() + "/" + rec.GetId()
	p.mu.Lock()
	pr, ok := p.peers[key]
	if !ok {
		pr = &peer{cluster: rec.GetCluster(), id: rec.GetId(), rec: rec}
		p.peers[key] = pr
	}
	pr.seenRev = max(pr.seenRev, rev)
	p.mu.Unlock()
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if recordChanged(pr.rec, rec) {
		if pr.conn != nil {
			pr.conn.retire()
			pr.conn = nil
		}
		pr.failures, pr.retryAt, pr.drained = 0, time.Time{}, false
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

// drainedConn handles a DRAINING reply on c: c is retired, and the peer is
// chosen last until its record changes.
func (pr *peer) drainedConn(c *pconn) {
	pr.mu.Lock()
	if pr.conn == c {
		pr.conn = nil
	}
	pr.drained = true
	pr.mu.Unlock()
	c.retire()
}

// conn returns an established connection to pr, dialing it if needed.
// Concurrent callers share one dial. The caller owns one stream count on
// the connection and must release it.
//
// The caller waits at most wait for a dial: past it, it gets
// ErrPeerConnecting and may try another candidate while the dial goes on
// for the next stream.
func (p *pool) conn(ctx context.Context, pr *peer, wait time.Duration) (*pconn, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		pr.mu.Lock()
		if pr.conn != nil && pr.conn.alive() && (pr.renewAt.IsZero() || p.g.cfg.Now().Before(pr.renewAt)) {
			c := pr.conn
			c.acquire()
			pr.mu.Unlock()
			return c, nil
		}
		if pr.conn != nil && pr.conn.alive() {
			// Due for renewal (a certificate nears expiry, or the maximum
			// age): its streams finish on it, new ones go to a new one.
			p.g.log.Info("gateway: replacing connection to remote gateway", logPeerCluster, pr.cluster, logPeer, pr.id, logLimit, pr.limit)
			pr.conn.retire()
			pr.conn = nil
		}
		ch := pr.dialing
		if ch == nil {
			if pr.failures > 0 && p.g.cfg.Now().Before(pr.retryAt) {
				pr.mu.Unlock()
				return nil, fmt.Errorf("%w: %s/%s", ErrPeerBackoff, pr.cluster, pr.id)
			}
			ch = make(chan struct{})
			pr.dialing = ch
			rec := pr.rec
			p.g.wg.Go(func() { p.dial(ctx, pr, rec, ch) })
		}
		pr.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			return nil, fmt.Errorf("%w: %s/%s", ErrPeerConnecting, pr.cluster, pr.id)
		}
		pr.mu.Lock()
		failed := pr.conn == nil && pr.failures > 0
		pr.mu.Unlock()
		if failed {
			return nil, fmt.Errorf("%w: %s/%s", ErrPeerBackoff, pr.cluster, pr.id)
		}
	}
}

// dial connects to rec and publishes the result on pr. ctx is the
// gateway's run context: a dial is shared, no single caller may cancel it.
func (p *pool) dial(ctx context.Context, pr *peer, rec *straitv1.Gateway, done chan struct{}) {
	// The SVID presented is this one or, rotated during the dial, a later
	// one: renewing by this one's expiry is never late.
	var own *x509.Certificate
	if svid, err := p.g.cfg.SVIDs.GetX509SVID(); err == nil && len(svid.Certificates) > 0 {
		own = svid.Certificates[0]
	}
	dialed := p.g.cfg.Now()
	c, err := p.dialRecord(ctx, rec)
	pr.mu.Lock()
	defer close(done)
	defer pr.mu.Unlock()
	pr.dialing = nil
	if err != nil {
		pr.noteFailureLocked(p.g.cfg.Now())
		p.g.m.peerUp.WithLabelValues(pr.cluster, pr.id).Set(0)
		p.g.m.peerFailures.WithLabelValues(pr.cluster, pr.id).Inc()
		p.g.links.failed(pr.cluster, pr.id, err, p.g.cfg.Now())
		p.g.log.Warn("gateway: dial remote gateway failed", logPeerCluster, pr.cluster, logPeer, pr.id, logPeerAddr, rec.GetAddress(),
			logFailures, pr.failures, logRetryIn, pr.retryAt.Sub(p.g.cfg.Now()).Round(time.Millisecond), logErr, err)
		return
	}
	pr.conn, pr.failures = &pconn{Conn: c}, 0
	var peerCert *x509.Certificate
	if certs := c.ConnectionState().TLS.PeerCertificates; len(certs) > 0 {
		peerCert = certs[0]
	}
	maxAge, _ := p.g.connLimits()
	pr.renewAt, pr.limit = poolRenewAt(dialed, own, peerCert, maxAge)
	p.g.m.peerUp.WithLabelValues(pr.cluster, pr.id).Set(1)
	p.g.log.Info("gateway: connected to remote gateway", logPeerCluster, pr.cluster, logPeer, pr.id, logPeerAddr, rec.GetAddress())
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

// noteFailureLocked counts a failure and schedules the next dial with
// exponential backoff and jitter.
func (pr *peer) noteFailureLocked(now time.Time) {
	pr.failures++
	d := min(backoffBase<<min(pr.failures-1, 16), backoffMax)
	d = d/2 + rand.N(d/2+1)
	pr.retryAt = now.Add(d)
}

// noteStreamFailure records a stream that failed before any byte came back
// for a reason other than a refusal; a dead connection is dropped.
func (p *pool) noteStreamFailure(pr *peer, c *pconn) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if closedForReconnect(c) {
		// The peer ended the connection's life (a certificate expired,
		// its maximum age): not a failure of the peer.
		if pr.conn == c {
			pr.conn = nil
		}
		return
	}
	if c.Context().Err() != nil && pr.conn == c {
		pr.conn = nil
		pr.noteFailureLocked(p.g.cfg.Now())
		p.g.m.peerUp.WithLabelValues(pr.cluster, pr.id).Set(0)
		p.g.m.peerFailures.WithLabelValues(pr.cluster, pr.id).Inc()
	}
}

// reconnect drops c, which its peer asked to replace (isReconnect): the
// next stream dials a new connection, and no failure is counted.
func (p *pool) reconnect(pr *peer, c *pconn) {
	pr.mu.Lock()
	if pr.conn == c {
		pr.conn = nil
	}
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

// closePeer retires pr's connection: it closes once its streams have
// finished, since a gateway that withdrew its record is draining.
func (p *pool) closePeer(pr *peer) {
	pr.mu.Lock()
	c := pr.conn
	pr.conn = nil
	pr.mu.Unlock()
	p.g.m.peerUp.DeleteLabelValues(pr.cluster, pr.id)
	p.g.m.peerRTT.DeleteLabelValues(pr.cluster, pr.id)
	p.g.m.peerFailures.DeleteLabelValues(pr.cluster, pr.id)
	p.g.links.remove(pr.cluster, pr.id)
	if c != nil {
		c.retire()
	}
}

// close closes every connection at once.
func (p *pool) close(code quic.ApplicationErrorCode, msg string) {
	p.mu.Lock()
	peers := p.peers
	p.peers = map[string]*peer{}
	p.mu.Unlock()
	for _, pr := range peers {
		pr.mu.Lock()
		if pr.conn != nil {
			_ = pr.conn.CloseWithError(code, msg)
		}
		pr.mu.Unlock()
	}
}

// sample publishes the RTT and liveness of every connection.
func (p *pool) sample() {
	p.mu.Lock()
	peers := make([]*peer, 0, len(p.peers))
	for _, pr := range p.peers {
		peers = append(peers, pr)
	}
	p.mu.Unlock()
	for _, pr := range peers {
		pr.mu.Lock()
		c, addr := pr.conn, pr.rec.GetAddress()
		pr.mu.Unlock()
		p.g.links.sample(pr.cluster, pr.id, addr, c, p.g.cfg.Now())
		up := c != nil && c.alive()
		if up {
			p.g.m.peerRTT.WithLabelValues(pr.cluster, pr.id).Set(c.ConnectionStats().SmoothedRTT.Seconds())
		}
		p.g.m.peerUp.WithLabelValues(pr.cluster, pr.id).Set(b2f(up))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
