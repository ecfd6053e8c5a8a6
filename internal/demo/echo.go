package demo

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"

	"github.com/strait-mesh/strait/proxy/proxyproto"
)

// EchoServer echoes every byte it receives, after the PROXY header, and
// half-closes when the client does. It records the SPIFFE ID of every
// relayed connection. The zero value is not usable: fill Addr (for Run) and
// optionally Logger.
type EchoServer struct {
	// Addr is where Run listens.
	Addr string
	// Logger receives errors. Nil discards them.
	Logger *slog.Logger

	srv  server
	mu   sync.Mutex
	seen []string
}

// Run listens on Addr and serves until ctx ends, then closes; it returns
// ctx.Err().
func (s *EchoServer) Run(ctx context.Context) error {
	return run(ctx, s.Addr, s.Serve, s.Close)
}

// Serve serves ln until Close and returns ErrServerClosed then.
func (s *EchoServer) Serve(ln net.Listener) error {
	return s.srv.accept(ln, s.handle)
}

// Close stops the server and closes its connections.
func (s *EchoServer) Close() error { return s.srv.close() }

// ListenAddr returns the bound address once serving, or nil.
func (s *EchoServer) ListenAddr() net.Addr { return s.srv.addr() }

// SPIFFEIDs returns the SPIFFE IDs of the relayed connections seen so far,
// in order. Connections without one (health checks) are not listed.
func (s *EchoServer) SPIFFEIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

func (s *EchoServer) handle(c *proxyproto.Conn) {
	h, err := c.Header()
	if err != nil {
		s.logger().Debug("no PROXY header", "err", err)
		return
	}
	if id, ok := h.SPIFFEID(); ok {
		s.mu.Lock()
		s.seen = append(s.seen, id)
		s.mu.Unlock()
	}
	if h.Command == proxyproto.Local {
		return
	}
	if _, err := io.Copy(writerOnly{c}, c); err != nil {
		s.logger().Debug("echo", "err", err)
		return
	}
	_ = c.CloseWrite()
}

func (s *EchoServer) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// writerOnly hides ReadFrom so that io.Copy reads through Conn.Read.
type writerOnly struct{ io.Writer }
