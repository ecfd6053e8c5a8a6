package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
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
