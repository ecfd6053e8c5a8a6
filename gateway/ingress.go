package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/strait-mesh/strait/trust"
)

// remote is the authenticated identity of an ingress connection's peer.
type remote struct {
	id      spiffeid.ID
	cluster string
}

// acceptIngress accepts QUIC connections from remote gateways until the
// listener closes. ctx is the run context.
func (g *Gateway) acceptIngress(ctx context.Context) error {
	for {
		conn, err := g.listener.Accept(ctx)
		if err != nil {
			if errors.Is(err, quic.ErrServerClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		markAccepted(conn)
		handshakeDone(conn)
		g.wg.Go(func() { g.serveConn(ctx, conn) })
	}
}

// serveConn accepts the streams of one connection until it closes.
func (g *Gateway) serveConn(ctx context.Context, conn *quic.Conn) {
	id, err := peerID(conn)
	var cluster string
	if err == nil {
		cluster, err = gatewayCluster(id)
	}
	if err != nil {
		g.connRefused(conn, id, string(trust.ReasonUnauthorized), err)
		_ = conn.CloseWithError(ConnErrUnauthorized, "not a gateway")
		return
	}
	if err := g.trackConn(conn, id); err != nil {
		g.connRefused(conn, id, connPeerLimit, err)
		_ = conn.CloseWithError(ConnErrRefused, err.Error())
		return
	}
	defer g.untrackConn(conn, id)
	peer := remote{id: id, cluster: cluster}
	g.log.Debug("gateway: ingress connection", logPeer, id.String(), logPeerAddr, conn.RemoteAddr().String())
	// No connection outlives its peer's certificate (or its maximum age).
	life := g.newIngressLife(conn, peer)
	defer life.stop()
	for {
		st, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		if !life.admit(st) {
			continue
		}
		g.wg.Go(func() {
			defer life.done()
			g.handleIngress(ctx, peer, st)
		})
	}
}

// trackConn registers an ingress connection so that shutdown can close it.
// It fails once shutdown began or when the peer identity already holds
// MaxConnsPerPeer connections.
func (g *Gateway) trackConn(conn *quic.Conn, id spiffeid.ID) error {
	g.connsMu.Lock()
	defer g.connsMu.Unlock()
	if g.conns == nil {
		return errors.New("gateway stopping")
	}
	if g.perPeer[id] >= g.cfg.MaxConnsPerPeer {
		return fmt.Errorf("%s already has %d connections", id, g.perPeer[id])
	}
	g.conns[conn] = struct{}{}
	g.perPeer[id]++
	g.peers.add()
	return nil
}

func (g *Gateway) untrackConn(conn *quic.Conn, id spiffeid.ID) {
	g.connsMu.Lock()
	defer g.connsMu.Unlock()
	if _, ok := g.conns[conn]; ok {
		delete(g.conns, conn)
		g.peers.done()
	}
	if g.perPeer[id]--; g.perPeer[id] <= 0 {
		delete(g.perPeer, id)
	}
}
