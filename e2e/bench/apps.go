package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/strait-mesh/strait/proxy/proxyproto"
)

// maxEchoBody bounds what the echo server reads of a request body.
const maxEchoBody = 1 << 20

// echoHandler answers POST with its body and anything else with "ok".
func echoHandler(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Content-Length", "3")
		_, _ = io.WriteString(w, "ok\n")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxEchoBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// EchoServer is the HTTP app of the latency and time-to-first-byte runs. It
// listens twice: Plain for direct, stunnel4 and haproxy, and Proxied (every
// connection starts with a PROXY v2 header) for Strait's destination proxy.
type EchoServer struct {
	Plain, Proxied net.Addr
	srv            *http.Server
	done           chan struct{}
}

// StartEchoServer starts the echo server on two loopback ports.
func StartEchoServer(log *slog.Logger) (*EchoServer, error) {
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: echo server: %w", err)
	}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = plain.Close()
		return nil, fmt.Errorf("bench: echo server: %w", err)
	}
	e := &EchoServer{
		Plain: plain.Addr(), Proxied: pl.Addr(), done: make(chan struct{}),
		srv: &http.Server{Handler: http.HandlerFunc(echoHandler), ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)},
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = e.srv.Serve(plain) }()
	go func() { defer wg.Done(); _ = e.srv.Serve(proxyproto.NewListener(pl, proxyproto.ListenerConfig{})) }()
	go func() { wg.Wait(); close(e.done) }()
	return e, nil
}

// Close stops the server.
func (e *EchoServer) Close() {
	_ = e.srv.Close()
	<-e.done
}

// Stripper is a TCP forwarder that removes the PROXY v2 header Strait's
// destination proxy sends before the payload, for apps that do not read it
// (iperf3). Connections whose header carries the LOCAL command (the proxy's
// health checks) are closed without reaching the app. Bytes after the
// header are copied by the kernel (splice) in both directions.
type Stripper struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
}

// StartStripper listens on a loopback port and forwards to target.
func StartStripper(target string) (*Stripper, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: stripper: %w", err)
	}
	s := &Stripper{ln: ln, target: target}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr is the address the destination proxy dials.
func (s *Stripper) Addr() net.Addr { return s.ln.Addr() }

// Close stops accepting and waits for the open connections to end.
func (s *Stripper) Close() {
	_ = s.ln.Close()
	s.wg.Wait()
}

func (s *Stripper) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = s.forward(c.(*net.TCPConn))
		}()
	}
}

func (s *Stripper) forward(c *net.TCPConn) error {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(proxyproto.DefaultHeaderTimeout))
	br := bufio.NewReaderSize(c, 256)
	h, err := proxyproto.Read(br)
	if err != nil {
		return fmt.Errorf("bench: stripper: %w", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	if h.Command == proxyproto.Local {
		return nil
	}
	up, err := net.DialTimeout("tcp", s.target, 5*time.Second)
	if err != nil {
		return fmt.Errorf("bench: stripper: %w", err)
	}
	defer up.Close()
	// What the header read buffered past the header goes first.
	if n := br.Buffered(); n > 0 {
		rest, _ := br.Peek(n)
		if _, err := up.Write(rest); err != nil {
			return fmt.Errorf("bench: stripper: %w", err)
		}
	}
	return pipeTCP(c, up.(*net.TCPConn))
}

// pipeTCP copies both ways between two TCP connections, passing a FIN on as a
// half-close, until both directions end.
func pipeTCP(a, b *net.TCPConn) error {
	errc := make(chan error, 2)
	cp := func(dst, src *net.TCPConn) {
		_, err := io.Copy(dst, src)
		_ = dst.CloseWrite()
		errc <- err
	}
	go cp(a, b)
	go cp(b, a)
	return errors.Join(<-errc, <-errc)
}
