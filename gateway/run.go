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
	grp.Go(func() error { return g.acceptIngress(gctx) })
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
	udp, err := listenUDP(g.cfg.IngressListenAddr, g.log)
	if err != nil {
		return err
	}
	g.udp = udp
	g.ingressAddr = udp.LocalAddr()
	g.transport = &quic.Transport{
		Conn:                udp,
		StatelessResetKey:   g.cfg.StatelessResetKey,
		TokenGeneratorKey:   g.cfg.TokenKey,
		VerifySourceAddress: g.verifySourceAddress,
		ConnContext:         g.admitAttempt,
	}
	if g.cfg.StatelessResetKey == nil {
		g.log.Info("gateway: no stateless reset key configured; peers detect a restart by idle timeout")
	}
	tlsConf, err := g.serverTLS()
	if err != nil {
		return err
	}
	g.listener, err = g.transport.Listen(tlsConf, g.serverQUICConfig())
	if err != nil {
		return fmt.Errorf("gateway: listen QUIC: %w", err)
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
	if g.listener != nil {
		_ = g.listener.Close()
	}
	if g.transport != nil {
		_ = g.transport.Close() // does not close a socket it did not open
	}
	if g.udp != nil {
		_ = g.udp.Close()
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
