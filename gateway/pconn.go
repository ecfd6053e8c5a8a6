package gateway

import (
	"sync/atomic"

	"github.com/quic-go/quic-go"
)

// pconn is a pooled connection to a remote gateway with the count of
// streams open on it. A retired connection takes no new streams and is
// closed, without error, as soon as its last stream ends: the remote
// gateway drains and waits for its peers to let go.
type pconn struct {
	*quic.Conn
	// shard is the connection's slot among its peer's connections, the
	// conn label of its metrics.
	shard   int
	streams atomic.Int64
	retired atomic.Bool
}

// alive reports whether the connection may carry new streams.
func (c *pconn) alive() bool { return !c.retired.Load() && c.Context().Err() == nil }

// acquire counts a new stream.
func (c *pconn) acquire() { c.streams.Add(1) }

// release counts the end of a stream and closes a retired connection that
// became idle.
func (c *pconn) release() {
	if c.streams.Add(-1) == 0 && c.retired.Load() {
		_ = c.CloseWithError(ConnErrNone, "idle after the remote gateway drained")
	}
}

// retire stops new streams on c and closes it once idle. Both retire and
// release check after their own write, so one of them sees the other.
func (c *pconn) retire() {
	c.retired.Store(true)
	if c.streams.Load() == 0 {
		_ = c.CloseWithError(ConnErrNone, "the remote gateway drained")
	}
}
