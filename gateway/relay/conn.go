package relay

import (
	"io"
	"net"

	"github.com/quic-go/quic-go"
)

// Conn is one side of a relay.
type Conn interface {
	io.Reader
	io.Writer
	// CloseWrite ends the direction toward this side in order (TCP FIN,
	// QUIC stream FIN). Reading may go on.
	CloseWrite() error
	// Abort ends both directions abruptly (TCP RST, QUIC stream reset).
	Abort()
	// Close releases the side after both directions ended in order.
	Close() error
}

// TCP adapts a TCP connection.
func TCP(c *net.TCPConn) Conn { return tcpConn{c} }

type tcpConn struct{ *net.TCPConn }

// Abort resets the connection: with a zero linger, Close sends RST.
func (c tcpConn) Abort() {
	_ = c.SetLinger(0)
	_ = c.TCPConn.Close()
}

// Stream adapts a QUIC stream. Aborting it cancels both of its directions
// with code.
func Stream(s *quic.Stream, code quic.StreamErrorCode) Conn {
	return streamConn{s: s, code: code}
}

type streamConn struct {
	s    *quic.Stream
	code quic.StreamErrorCode
}

func (c streamConn) Read(p []byte) (int, error)  { return c.s.Read(p) }
func (c streamConn) Write(p []byte) (int, error) { return c.s.Write(p) }

// CloseWrite sends FIN on the stream's send side.
func (c streamConn) CloseWrite() error { return c.s.Close() }

// Abort resets the send side and asks the peer to stop sending. Bytes
// already written are still delivered when both ends enabled
// quic.Config.EnableStreamResetPartialDelivery (RESET_STREAM_AT), as TCP
// delivers the data sent before a RST.
func (c streamConn) Abort() {
	c.s.SetReliableBoundary()
	c.s.CancelRead(c.code)
	c.s.CancelWrite(c.code)
}

// Close is a no-op: after both directions ended in order the stream is
// complete.
func (c streamConn) Close() error { return nil }
