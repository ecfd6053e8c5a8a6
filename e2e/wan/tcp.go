package wan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// tcpConn is one relayed TCP connection.
type tcpConn struct {
	client net.Conn
	src    netip.Addr // the client's address

	mu      sync.Mutex
	backend net.Conn
	closed  bool
}

// close closes both sides; with reset, the peers get an RST.
func (c *tcpConn) close(reset bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	for _, conn := range []net.Conn{c.client, c.backend} {
		if conn == nil {
			continue
		}
		if reset {
			setReset(conn)
		}
		conn.Close()
	}
}

// setBackend records the dialed backend; it reports false (and closes the
// backend) when the connection was closed meanwhile.
func (c *tcpConn) setBackend(b net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		b.Close()
		return false
	}
	c.backend = b
	return true
}

func setReset(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
}

func (l *Link) acceptLoop(ctx context.Context) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			l.log.Warn("wan accept failed", logError, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		l.stats.tcpAccepted.Add(1)
		src := addrOf(conn.RemoteAddr())
		if l.cfg.PartitionMode == Refuse && l.current().blocked(src) {
			l.stats.tcpRefused.Add(1)
			setReset(conn)
			conn.Close()
			continue
		}
		c := &tcpConn{client: conn, src: src}
		if !l.track(c) {
			conn.Close()
			return
		}
		l.goTrack(func() { l.serveTCP(ctx, c) })
	}
}

// track registers c; it reports false when the link is shutting down.
func (l *Link) track(c *tcpConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.done:
		return false
	default:
	}
	l.conns[c] = struct{}{}
	l.stats.tcpActive.Add(1)
	return true
}

func (l *Link) untrack(c *tcpConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.conns[c]; ok {
		delete(l.conns, c)
		l.stats.tcpActive.Add(-1)
	}
}

func (l *Link) serveTCP(ctx context.Context, c *tcpConn) {
	defer l.untrack(c)
	defer c.close(false)
	// A blackholed link lets the connection wait, like a SYN retransmitted
	// until the network heals.
	if !l.waitUnblocked(ctx, c.src) {
		return
	}
	accepted := time.Now()
	backend, err := l.dialBackend(ctx)
	if err != nil {
		l.log.Warn("wan tcp dial failed", logClient, c.client.RemoteAddr().String(), logError, err)
		setReset(c.client)
		return
	}
	if !c.setBackend(backend) {
		return
	}
	// The first forward bytes may not arrive before the emulated handshake
	// (one round trip) plus their own forward delay.
	var firstForward time.Time
	if !l.cfg.NoHandshakeDelay {
		st := l.current()
		firstForward = accepted.Add(2*st.shape(Forward, c.src).Delay + st.shape(Reverse, c.src).Delay)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		l.pipe(ctx, c, backend, c.client, Forward, firstForward, &l.stats.tcpBytesForward)
	}()
	go func() {
		defer wg.Done()
		l.pipe(ctx, c, c.client, backend, Reverse, time.Time{}, &l.stats.tcpBytesReverse)
	}()
	wg.Wait()
}

func (l *Link) dialBackend(ctx context.Context) (net.Conn, error) {
	var errs []error
	for _, b := range l.pickBackends() {
		dctx, cancel := context.WithTimeout(ctx, l.cfg.DialTimeout)
		conn, err := l.cfg.Net.DialContext(dctx, "tcp", b)
		cancel()
		if err == nil {
			return conn, nil
		}
		l.stats.tcpDialFailures.Add(1)
		errs = append(errs, fmt.Errorf("%s: %w", b, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%w: %w", ErrNoBackend, errors.Join(errs...))
}

type chunk struct {
	data []byte
	at   time.Time
}

// pipe relays src to dst, delaying each chunk by dir's shape and keeping
// order; no chunk is delivered before notBefore. On EOF it half-closes dst;
// on any other error it closes c.
func (l *Link) pipe(ctx context.Context, c *tcpConn, dst, src net.Conn, dir Direction, notBefore time.Time, bytes *atomic.Int64) {
	ch := make(chan chunk, l.cfg.TCPQueue)
	var readErr error
	go func() {
		defer close(ch)
		last := notBefore
		for {
			buf := l.getBuf()
			n, err := src.Read(buf)
			if n > 0 {
				at, _ := l.releaseAt(dir, false, c.src)
				if at.Before(last) {
					at = last
				}
				last = at
				select {
				case ch <- chunk{data: buf[:n], at: at}:
				case <-ctx.Done():
					readErr = ctx.Err()
					return
				}
			} else {
				l.putBuf(buf)
			}
			if err != nil {
				readErr = err
				return
			}
		}
	}()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	failed := false
	for ck := range ch {
		if failed {
			continue // drain so the reader can finish
		}
		if !l.waitDue(ctx, timer, ck.at, c.src) {
			failed = true
			c.close(false)
			continue
		}
		_, err := dst.Write(ck.data)
		l.putBuf(ck.data)
		if err != nil {
			failed = true
			c.close(false)
			continue
		}
		bytes.Add(int64(len(ck.data)))
	}
	if failed {
		return
	}
	if errors.Is(readErr, io.EOF) {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
			return
		}
	}
	c.close(false)
}

// waitUnblocked blocks while the client at src is partitioned; it reports
// false when ctx ends first.
func (l *Link) waitUnblocked(ctx context.Context, src netip.Addr) bool {
	for {
		st, changed := l.watch()
		if !st.blocked(src) {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// waitDue blocks until at has passed and the client at src is not
// partitioned; it reports false when ctx ends first.
func (l *Link) waitDue(ctx context.Context, timer *time.Timer, at time.Time, src netip.Addr) bool {
	for {
		if !l.waitUnblocked(ctx, src) {
			return false
		}
		d := time.Until(at)
		if d <= 0 {
			if l.current().blocked(src) {
				continue
			}
			return true
		}
		timer.Reset(d)
		select {
		case <-timer.C:
		case <-ctx.Done():
			return false
		}
	}
}

// getBuf returns a TCPChunk-sized buffer from the link's pool.
func (l *Link) getBuf() []byte {
	if b, ok := l.bufs.Get().(*[]byte); ok {
		return (*b)[:l.cfg.TCPChunk]
	}
	return make([]byte, l.cfg.TCPChunk)
}

// putBuf returns a buffer from getBuf to the pool.
func (l *Link) putBuf(b []byte) {
	if cap(b) < l.cfg.TCPChunk {
		return
	}
	b = b[:cap(b)]
	l.bufs.Put(&b)
}
