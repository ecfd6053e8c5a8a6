package gateway

import (
	"context"
	"time"
)

// Drain stops the gateway gracefully and returns when it has stopped or ctx
// is done:
//  1. the Gateway record is withdrawn (written with draining=true, then
//     deleted), so that peers stop choosing this gateway;
//  2. new streams are refused with STREAM_CODE_DRAINING, so that callers
//     retry on another gateway, and the egress and QUIC listeners close;
//  3. open streams may finish, up to the drain timeout;
//  4. the remaining connections are closed with ConnErrDraining.
//
// Drain is idempotent and may be called concurrently with Run. Before Run
// it returns at once, and Run then returns nil without listening.
func (g *Gateway) Drain(ctx context.Context) error {
	g.drainMu.Do(func() { close(g.drainReq) })
	if !g.started.Load() {
		return nil
	}
	select {
	case <-g.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drainedSignal starts the drain and returns a channel closed when open
// streams have finished or the drain timeout passed.
func (g *Gateway) drainedSignal(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	g.wg.Go(func() {
		defer close(done)
		g.drainAndWait(ctx)
	})
	return done
}

// drainAndWait runs steps 1-3 of Drain.
func (g *Gateway) drainAndWait(ctx context.Context) {
	g.startDrain()
	timeout := g.liveNow().drain
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := g.active.wait(ctx); err != nil {
		g.log.Warn("gateway: drain timeout with streams still open", logStreams, g.active.count())
		return
	}
	// Closing a connection discards stream data the peer has not
	// acknowledged yet: let peers close their idle connections first (they
	// do once they see the record withdrawn or a DRAINING reply).
	lctx, lcancel := context.WithTimeout(ctx, drainLinger)
	defer lcancel()
	if err := g.peers.wait(lctx); err != nil {
		g.log.Info("gateway: drained; closing connections peers kept open", logConns, g.peers.count())
		return
	}
	g.log.Info("gateway: drained")
}

// drainLinger bounds the wait, after the last stream of a drain ended, for
// peers to close their connections.
const drainLinger = time.Second

// startDrain runs steps 1 and 2 of Drain, once.
func (g *Gateway) startDrain() {
	if !g.draining.CompareAndSwap(false, true) {
		return
	}
	defer close(g.drainCh)
	g.m.draining.Set(1)
	g.log.Info("gateway: draining", logStreams, g.active.count())
	g.withdraw()
	if g.listener != nil {
		_ = g.listener.Close()
	}
	if g.egressLn != nil {
		_ = g.egressLn.Close()
	}
}
