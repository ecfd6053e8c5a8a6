package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/strait-mesh/strait/proxy/proxyproto"
)

// HTTPServer answers GET / with "hello from cluster <Cluster>; you are
// <caller SPIFFE ID>\n", the ID taken from the connection's PROXY header
// ("unknown" when it has none), and GET /healthz with "ok\n". Fill Cluster,
// Addr (for Run) and optionally Logger; the zero value is not usable.
type HTTPServer struct {
	// Cluster is named in the greeting.
	Cluster string
	// Addr is where Run listens.
	Addr string
	// Logger receives errors. Nil discards them.
	Logger *slog.Logger

	once sync.Once
	hs   *http.Server
	mu   sync.Mutex
	ln   net.Listener
}

// connKey is the context key of the connection a request came on.
type connKey struct{}

func (s *HTTPServer) init() {
	s.once.Do(func() {
		s.hs = &http.Server{
			Handler:           s.handler(),
			ReadHeaderTimeout: 10 * time.Second,
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				return context.WithValue(ctx, connKey{}, c)
			},
		}
		if s.Logger != nil {
			s.hs.ErrorLog = slog.NewLogLogger(s.Logger.Handler(), slog.LevelDebug)
		}
	})
}

// Run listens on Addr and serves until ctx ends, then closes; it returns
// ctx.Err().
func (s *HTTPServer) Run(ctx context.Context) error {
	return run(ctx, s.Addr, s.Serve, s.Close)
}

// Serve serves ln until Close and returns ErrServerClosed then.
func (s *HTTPServer) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	err := s.hs.Serve(proxyproto.NewListener(ln, proxyproto.ListenerConfig{HeaderTimeout: headerTimeout}))
	if errors.Is(err, http.ErrServerClosed) {
		return ErrServerClosed
	}
	return err
}

// Close stops the server and closes its connections. It is idempotent.
func (s *HTTPServer) Close() error {
	s.init()
	return s.hs.Close()
}

// ListenAddr returns the bound address once serving, or nil.
func (s *HTTPServer) ListenAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

func (s *HTTPServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "hello from cluster %s; you are %s\n", s.Cluster, callerID(r))
	})
	return mux
}

// callerID is the SPIFFE ID in the PROXY header of the request's
// connection, or "unknown".
func callerID(r *http.Request) string {
	c, ok := r.Context().Value(connKey{}).(*proxyproto.Conn)
	if !ok {
		return "unknown"
	}
	h, err := c.Header()
	if err != nil {
		return "unknown"
	}
	if id, ok := h.SPIFFEID(); ok {
		return id
	}
	return "unknown"
}
