package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"
)

// Run binds the gateway's listeners, registers its record and serves until
// ctx is canceled or Drain completes. On cancel it drains first (see Drain),
// bounded by the drain timeout, and returns ctx.Err(); after Drain it
// returns nil. Run may be called once; after an earlier Drain it returns
// nil at once without listening.
func (g *Gateway) Run(ctx context.Context) error {
	if !g.started.CompareAndSwap(false, true) {
		return ErrClosed
	}
	defer close(g.stopped)
	select {
	case <-g.drainReq:
		return nil
	default:
	}
	if err := g.bind(); err != nil {
		g.closeSockets()
		return err
	}
	g.protect(ctx)
	g.register()
	close(g.ready)
	g.log.Info("gateway: ready", logAddr, g.ingressAddr.String())

	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	grp, gctx := errgroup.WithContext(runCtx)
	for i, s := range g.ingress {
		grp.Go(func() error { return g.acceptIngress(gctx, i, s.ln) })
	}
	grp.Go(func() error { return g.acceptEgress(gctx) })
	grp.Go(func() error { return g.serveAdmin() })
	grp.Go(func() error { return g.watch(gctx) })

	var err error
	select {
	case <-ctx.Done():
		err = ctx.Err()
		g.drainAndWait(context.Background())
	case <-g.drainReq:
		<-g.drainedSignal(runCtx)
	case <-gctx.Done():
		err = fmt.Errorf("gateway: %w", context.Cause(gctx))
	}
	g.shutdown(cancelRun)
	if werr := grp.Wait(); werr != nil && err == nil && !errors.Is(werr, context.Canceled) {
		err = werr
	}
	g.wg.Wait()
	return err
}

// bind opens every socket of the gateway.
func (g *Gateway) bind() error {
	conns, err := listenIngress(g.cfg.IngressListenAddr, g.cfg.IngressSockets)
	if err != nil {
		return err
	}
	for i, c := range conns {
		g.ingress = append(g.ingress, &udpSocket{conn: c, tr: &quic.Transport{
			Conn:                  c,
			ConnectionIDGenerator: slotConnIDs{slot: byte(i)},
			StatelessResetKey:     g.cfg.StatelessResetKey,
			TokenGeneratorKey:     g.cfg.TokenKey,
			VerifySourceAddress:   g.verifySourceAddress,
			ConnContext:           g.admitAttempt,
		}})
	}
	g.ingressAddr = conns[0].LocalAddr()
	for i := range g.cfg.ConnsPerRemoteGateway {
		c, err := listenDial(g.ingressAddr)
		if err != nil {
			return err
		}
		conns = append(conns, c)
		g.dialers = append(g.dialers, &udpSocket{conn: c, tr: &quic.Transport{
			Conn:                  c,
			ConnectionIDGenerator: slotConnIDs{slot: byte(i)},
			StatelessResetKey:     g.cfg.StatelessResetKey,
		}})
	}
	sizeBuffers(conns, g.log)
	if g.cfg.StatelessResetKey == nil {
		g.log.Info("gateway: no stateless reset key configured; peers detect a restart by idle timeout")
	}
	tlsConf, err := g.serverTLS()
	if err != nil {
		return err
	}
	for _, s := range g.ingress {
		if s.ln, err = s.tr.Listen(tlsConf, g.serverQUICConfig()); err != nil {
			return fmt.Errorf("gateway: listen QUIC: %w", err)
		}
	}
	eln, err := net.Listen("tcp", g.cfg.EgressListenAddr)
	if err != nil {
		return fmt.Errorf("gateway: listen egress: %w", err)
	}
	g.egressLn = eln.(*net.TCPListener)
	g.adminLn, err = net.Listen("tcp", g.cfg.AdminListenAddr)
	if err != nil {
		return fmt.Errorf("gateway: listen admin: %w", err)
	}
	g.admin = &http.Server{Handler: g.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
	return nil
}

// serverQUICConfig builds the ingress's QUIC configuration; the live values
// are read for every new connection.
func (g *Gateway) serverQUICConfig() *quic.Config {
	c := g.liveNow().quicConfig(true, g.cfg.HandshakeTimeout)
	c.GetConfigForClient = func(*quic.ClientInfo) (*quic.Config, error) {
		return g.liveNow().quicConfig(true, g.cfg.HandshakeTimeout), nil
	}
	return c
}

// shutdown stops accepting, closes every connection and socket, and ends
// the goroutines started by Run. It runs once, at the end of Run.
func (g *Gateway) shutdown(cancelRun context.CancelFunc) {
	g.startDrain()
	cancelRun()
	_ = g.admin.Close()
	g.closeIngressConns(ConnErrDraining, "gateway stopped")
	g.pool.close(ConnErrDraining, "gateway stopped")
	g.closeSockets()
	g.log.Info("gateway: stopped")
}

func (g *Gateway) closeSockets() {
	for _, s := range g.ingress {
		s.close()
	}
	for _, s := range g.dialers {
		s.close()
	}
	if g.egressLn != nil {
		_ = g.egressLn.Close()
	}
	if g.adminLn != nil {
		_ = g.adminLn.Close()
	}
}

func (g *Gateway) closeIngressConns(code quic.ApplicationErrorCode, msg string) {
	g.connsMu.Lock()
	conns := make([]*quic.Conn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	for range g.conns {
		g.peers.done()
	}
	g.conns = nil // no connection is tracked from now on
	g.connsMu.Unlock()
	for _, c := range conns {
		_ = c.CloseWithError(code, msg)
	}
}
