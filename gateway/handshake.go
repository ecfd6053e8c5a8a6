package gateway

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
)

// errTooManyHandshakes refuses a connection attempt beyond MaxHandshakes.
var errTooManyHandshakes = errors.New("gateway: too many handshakes in progress")

// handshake is the state of one incoming connection attempt, kept in the
// context quic-go derives the connection's context from.
type handshake struct {
	accepted atomic.Bool
	once     sync.Once
	end      func()
}

type handshakeKey struct{}

// connContext admits a connection attempt to the TLS handshake. Beyond
// MaxHandshakes attempts in progress it refuses the attempt before any
// cryptography (the peer gets CONNECTION_REFUSED and retries). It also
// counts attempts that end without being accepted.
func (g *Gateway) connContext(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
	if g.handshakes.Add(1) > int64(g.cfg.MaxHandshakes) {
		g.handshakes.Add(-1)
		g.m.handshakeRefused.Inc()
		return nil, errTooManyHandshakes
	}
	hs := &handshake{}
	hs.end = func() { hs.once.Do(func() { g.handshakes.Add(-1) }) }
	ctx = context.WithValue(ctx, handshakeKey{}, hs)
	context.AfterFunc(ctx, func() {
		if !hs.accepted.Load() {
			g.m.handshakeFails.Inc()
		}
		hs.end()
	})
	return ctx, nil
}

// markAccepted records that conn completed its handshake.
func markAccepted(conn *quic.Conn) {
	if hs, ok := conn.Context().Value(handshakeKey{}).(*handshake); ok {
		hs.accepted.Store(true)
		hs.end()
	}
}
