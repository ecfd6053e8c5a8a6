package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// relayBufSize is the copy buffer of each direction: the largest TLS record
// payload plus room, so that one Read fills one Write.
const relayBufSize = 32 << 10

// relayResult tells how a relay ended.
type relayResult struct {
	// Up is what went from a to b; Down from b to a.
	Up, Down int64
	// UpErr and DownErr are the errors that ended each direction, nil for a
	// clean end of stream. A read error on b is DownErr.
	UpErr, DownErr error
}

// halfCloser is a connection that can close its write side alone: TCP
// connections, and TLS connections (close_notify).
type halfCloser interface {
	CloseWrite() error
}

// relay copies a to b and b to a until both directions end. A clean end of
// stream on one side half-closes the other, so the peer sees it too; an
// error on either side resets both connections. relay closes a and b before
// it returns.
func (p *Proxy) relay(a, b net.Conn) relayResult {
	var res relayResult
	var wg sync.WaitGroup
	wg.Go(func() { res.Up, res.UpErr = p.pipe(b, a) })
	res.Down, res.DownErr = p.pipe(a, b)
	if res.DownErr != nil {
		_ = a.Close()
		_ = b.Close()
	}
	wg.Wait()
	_ = a.Close()
	_ = b.Close()
	return res
}

// pipe copies src to dst, then half-closes dst. On an error it closes both.
func (p *Proxy) pipe(dst, src net.Conn) (int64, error) {
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	n, err := io.CopyBuffer(onlyWriter{dst}, onlyReader{src}, *bp)
	if isUnexchanged(dst) || isUnexchanged(src) {
		// An outbound destination failed before any byte crossed it:
		// the application's connection is kept for another candidate
		// (relayOutbound).
		return n, err
	}
	if err == nil {
		if hc, ok := dst.(halfCloser); ok {
			if cerr := hc.CloseWrite(); cerr == nil {
				return n, nil
			}
		}
	}
	abort(src)
	abort(dst)
	if errors.Is(err, net.ErrClosed) {
		return n, nil // the other direction, or a drain, ended it first
	}
	return n, err
}

// abort closes c with a TCP reset instead of a FIN, so that the peer sees
// the failure instead of an end of stream (a reset maps to RST).
func abort(c net.Conn) {
	if f, ok := c.(*firstByteConn); ok {
		c = f.Conn
	}
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = c.Close()
}

// onlyReader and onlyWriter hide ReadFrom and WriteTo so that io.CopyBuffer
// uses the pooled buffer.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

// unexchangedError is the failure of a destination before any byte crossed
// it in either direction (see firstByteConn): nothing of the application's
// reached the destination, so the connection may go to another candidate.
type unexchangedError struct{ err error }

func (e *unexchangedError) Error() string {
	return "proxy: destination failed before any byte was exchanged: " + e.err.Error()
}
func (e *unexchangedError) Unwrap() error { return e.err }

// States of a firstByteConn.
const (
	fresh     = iota // no byte has crossed yet
	exchanged        // a write was accepted or a read returned data
	failed           // it failed while fresh
)

// firstByteConn is the destination of an outbound relay. Until a byte has
// crossed it (a write accepted, a read that returned data), a failure is
// recorded, the application bytes it did not write are kept (unsent), and
// every later call fails with *unexchangedError without touching the
// connection. Such a failure is retryable whatever came before it: the
// inner handshake completed, but the destination got no byte of the
// request (for example its application died with the connection in its
// accept queue, and the destination proxy reset the caller).
type firstByteConn struct {
	net.Conn
	mu     sync.Mutex
	state  int
	err    error
	unsent []byte
}

// tentativeConn is a destination whose accepted writes are not final until
// it accepts the connection: a session stream before its answer
// (session.Stream). Until then the bytes written are kept, and after a
// failure the destination tells whether they may go elsewhere.
type tentativeConn interface {
	Tentative() bool
	Retryable() bool
}

// retryableFailure reports whether a failure of the connection with no
// byte read from it leaves the bytes written to it free to go elsewhere.
func (c *firstByteConn) retryableFailure() bool {
	t, ok := c.Conn.(tentativeConn)
	return !ok || t.Retryable()
}

func (c *firstByteConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.state == failed {
		c.unsent = append(c.unsent, b...)
		c.mu.Unlock()
		return 0, &unexchangedError{c.err}
	}
	c.mu.Unlock()
	n, err := c.Conn.Write(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.state == exchanged:
	case c.state == failed:
		// A read failed meanwhile (the destination reset): whatever
		// this write handed the socket was not delivered either; it
		// goes to the next candidate.
		c.unsent = append(c.unsent, b...)
		return 0, &unexchangedError{c.err}
	case err == nil && isTentative(c.Conn):
		// Accepted, but the destination has not accepted the stream
		// yet: kept in case it refuses.
		c.unsent = append(c.unsent, b...)
	case n > 0 || (err == nil && len(b) > 0):
		c.state, c.unsent = exchanged, nil
	case err != nil:
		if !c.retryableFailure() {
			c.state, c.unsent = exchanged, nil
			return n, err
		}
		// A TLS record is written whole or not counted: a record cut
		// short cannot be decrypted, so none of b was delivered.
		if c.state == fresh {
			c.state, c.err = failed, err
		}
		c.unsent = append(c.unsent, b...)
		return 0, &unexchangedError{c.err}
	}
	return n, err
}

// isTentative reports whether c is a tentativeConn not yet accepted.
func isTentative(c net.Conn) bool {
	t, ok := c.(tentativeConn)
	return ok && t.Tentative()
}

func (c *firstByteConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	if c.state == failed {
		c.mu.Unlock()
		return 0, &unexchangedError{c.err}
	}
	c.mu.Unlock()
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.state == failed:
		// Failed meanwhile: what arrived from the abandoned
		// destination is dropped, the application has seen none of it.
		return 0, &unexchangedError{c.err}
	case n > 0:
		c.state, c.unsent = exchanged, nil
	case err != nil && c.state == fresh && !c.retryableFailure():
		// A session stream that may have delivered what was written.
		c.state, c.unsent = exchanged, nil
	case err != nil && c.state == fresh:
		// An end of stream counts too: a destination proxy that resets
		// the caller sends close_notify first.
		c.state, c.err = failed, err
		return 0, &unexchangedError{err}
	}
	return n, err
}

// CloseWrite half-closes the destination (see halfCloser).
func (c *firstByteConn) CloseWrite() error {
	hc, ok := c.Conn.(halfCloser)
	if !ok {
		return errors.ErrUnsupported
	}
	c.mu.Lock()
	if c.state == fresh && !isTentative(c.Conn) {
		// The destination is told the request ended. (A tentative
		// destination that fails still gives the bytes back; the next
		// candidate's relay reads the application's end of stream
		// again.)
		c.state, c.unsent = exchanged, nil
	}
	c.mu.Unlock()
	return hc.CloseWrite()
}

// unexchanged reports whether c failed before any byte crossed it.
func (c *firstByteConn) unexchanged() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == failed
}

// isUnexchanged reports whether c is a firstByteConn that failed before any
// byte crossed it.
func isUnexchanged(c net.Conn) bool {
	f, ok := c.(*firstByteConn)
	return ok && f.unexchanged()
}

// relayOutbound is relay for an outbound connection whose destination is
// dest. When dest fails before any byte crossed it, both directions stop
// without touching the application's connection (its read deadline, used to
// stop the other direction, is cleared again), and retry is true: the
// caller may connect it to another candidate and write dest.unsent first.
// Otherwise it is relay, and closes both.
func (p *Proxy) relayOutbound(app net.Conn, dest *firstByteConn) (res relayResult, retry bool) {
	stop := func() {
		_ = dest.Conn.Close()
		_ = app.SetReadDeadline(time.Now())
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		res.Up, res.UpErr = p.pipe(dest, app)
		if dest.unexchanged() {
			stop()
		}
	})
	res.Down, res.DownErr = p.pipe(app, dest)
	switch {
	case dest.unexchanged():
		stop()
	case res.DownErr != nil:
		_ = app.Close()
		_ = dest.Close()
	}
	wg.Wait()
	if dest.unexchanged() {
		_ = app.SetReadDeadline(time.Time{})
		return res, true
	}
	_ = app.Close()
	_ = dest.Close()
	return res, false
}
