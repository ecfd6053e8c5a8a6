package demo

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/strait-mesh/strait/proxy/proxyproto"
)

// headerTimeout bounds how long a connection may take to send its PROXY
// header.
const headerTimeout = 5 * time.Second

// server is the listener and connection bookkeeping the demo servers share.
type server struct {
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("demo: server closed")

// run listens on addr and serves with serve until ctx ends.
func run(ctx context.Context, addr string, serve func(net.Listener) error, closeFn func() error) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = closeFn() })
	defer stop()
	err = serve(ln)
	if errors.Is(err, ErrServerClosed) && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// accept serves ln with handle, each connection in a goroutine, until
// Close.
func (s *server) accept(ln net.Listener, handle func(*proxyproto.Conn)) error {
	pl := proxyproto.NewListener(ln, proxyproto.ListenerConfig{HeaderTimeout: headerTimeout})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.ln = ln
	s.conns = map[net.Conn]struct{}{}
	s.mu.Unlock()
	for {
		c, err := pl.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			return err
		}
		if !s.track(c) {
			_ = c.Close()
			continue
		}
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			defer c.Close()
			handle(c.(*proxyproto.Conn))
		}()
	}
}

func (s *server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track records c and counts its goroutine in wg, under the same lock
// close takes, so that close's Wait never runs beside an Add from zero (a
// connection accepted as Close began).
func (s *server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *server) untrack(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// addr is the bound address, or nil before Serve.
func (s *server) addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// close stops accepting, closes every connection and waits for their
// goroutines. It is idempotent.
func (s *server) close() error {
	s.mu.Lock()
	s.closed = true
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
