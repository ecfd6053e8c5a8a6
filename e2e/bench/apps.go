package bench

import (
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
