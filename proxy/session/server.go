package session

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http2"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// Accept opens the destination of one stream: it authorizes the stream to
// target (the name the caller asked for) and returns the application
// connection to relay it to, or an error, a *RefusedError to answer with
// its code (any other error answers INTERNAL). done, if not nil, is called
// once the relay has ended, with the bytes and errors of each direction
// (up: caller to application).
type Accept func(ctx context.Context, target string) (app net.Conn, done func(Result), err error)

// Result is how a stream's relay ended.
type Result struct {
	Up, Down       int64
	UpErr, DownErr error
}

// Server serves the destination side of sessions. It is safe for
// concurrent use.
type Server struct {
	cfg  Config
	m    *Metrics
	h2   *http2.Server
	base *http.Server
	bufs sync.Pool
}

// NewServer returns a Server. m may be nil.
func NewServer(cfg Config, m *Metrics) (*Server, error) {
	cfg = cfg.withDefaults()
	s := &Server{
		cfg: cfg,
		m:   m,
		h2: &http2.Server{
			MaxConcurrentStreams:         uint32(cfg.MaxStreams),
			IdleTimeout:                  2 * cfg.IdleTimeout,
			ReadIdleTimeout:              cfg.PingAfter,
			PingTimeout:                  cfg.PingTimeout,
			MaxUploadBufferPerStream:     cfg.StreamWindow,
			MaxUploadBufferPerConnection: cfg.SessionWindow,
		},
		base: &http.Server{},
	}
	if err := http2.ConfigureServer(s.base, s.h2); err != nil {
		return nil, err
	}
	s.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	return s, nil
}

// ServeConn serves the streams of one session on conn, whose handshake has
// negotiated ALPN, until the connection closes (or ctx ends). Every
// stream is given to accept.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn, accept Accept) {
	var streams atomic.Int64
	s.m.sessionOpened(SideServer)
	defer func() { s.m.sessionClosed(SideServer, streams.Load()) }()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streams.Add(1)
		s.m.streamOpened(SideServer)
		defer s.m.streamClosed(SideServer)
		s.serveStream(w, r, accept)
	})
	s.h2.ServeConn(conn, &http2.ServeConnOpts{Context: ctx, Handler: h, BaseConfig: s.base})
}

// Shutdown sends GOAWAY on every session: callers open no new stream on
// them, and each session closes once its streams have ended.
func (s *Server) Shutdown(ctx context.Context) error { return s.base.Shutdown(ctx) }

// refuse answers a stream with a refusal.
func refuse(w http.ResponseWriter, code straitv1.StreamCode) {
	w.Header().Set(codeHeader, strconv.Itoa(int(code)))
	w.WriteHeader(statusOf(code))
}

func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, accept Accept) {
	if r.Method != http.MethodConnect {
		refuse(w, straitv1.StreamCode_STREAM_CODE_BAD_REQUEST)
		return
	}
	app, done, err := accept(r.Context(), r.Host)
	if err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			refuse(w, re.Code)
		} else {
			refuse(w, straitv1.StreamCode_STREAM_CODE_INTERNAL)
		}
		return
	}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		_ = app.Close()
		if done != nil {
			done(Result{DownErr: err})
		}
		return
	}
	res := s.relay(w, rc, r.Body, app)
	if done != nil {
		done(res)
	}
	if res.DownErr != nil {
		// Reset the stream: the caller sees the failure, not an end of
		// stream (a reset maps to RST).
		panic(http.ErrAbortHandler)
	}
}

// relay copies body to app (then half-closes app) and app to w, flushing
// each write. It returns when app's direction ends: an end of stream ends
// the handler and so the stream's answer; anything the caller still sends
// is dropped (HTTP/2 has no half-closed answer while the request goes on).
func (s *Server) relay(w io.Writer, rc *http.ResponseController, body io.Reader, app net.Conn) Result {
	var res Result
	var up atomic.Int64
	upDone := make(chan error, 1)
	go func() {
		bp := s.bufs.Get().(*[]byte)
		defer s.bufs.Put(bp)
		_, err := io.CopyBuffer(countWriter{app, &up}, onlyReader{body}, *bp)
		if err == nil {
			if hc, ok := app.(interface{ CloseWrite() error }); ok {
				err = hc.CloseWrite()
			}
		}
		if err != nil {
			_ = app.Close()
		}
		upDone <- err
	}()
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	buf := *bp
	for {
		n, err := app.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				res.DownErr = werr
				break
			}
			if ferr := rc.Flush(); ferr != nil {
				res.DownErr = ferr
				break
			}
			res.Down += int64(n)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				res.DownErr = err
			}
			break
		}
	}
	_ = app.Close()
	select {
	case res.UpErr = <-upDone:
	default: // still reading the caller: the handler's end stops it
	}
	res.Up = up.Load()
	return res
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

type onlyReader struct{ io.Reader }
