package load

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// KeyHeader carries a request's idempotency key (also sent as ?key=).
const KeyHeader = "Idempotency-Key"

// Reply is the JSON body a Server answers with.
type Reply struct {
	Cluster string `json:"cluster"`
	Host    string `json:"host"`
	Key     string `json:"key"`
}

// ServerStats is the JSON body of GET /stats.
type ServerStats struct {
	Requests   int64 `json:"requests"`
	Duplicates int64 `json:"duplicates"` // requests whose key was seen before
}

// Server answers GET / with a Reply naming its cluster and host, and GET
// /stats with ServerStats. It is an http.Handler.
type Server struct {
	Cluster string
	Host    string

	mu    sync.Mutex
	keys  map[string]int
	stats ServerStats
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/stats" {
		s.mu.Lock()
		st := s.stats
		s.mu.Unlock()
		writeJSON(w, st)
		return
	}
	key := r.Header.Get(KeyHeader)
	if key == "" {
		key = r.URL.Query().Get("key")
	}
	s.mu.Lock()
	if s.keys == nil {
		s.keys = make(map[string]int)
	}
	s.stats.Requests++
	if key != "" {
		if s.keys[key] > 0 {
			s.stats.Duplicates++
		}
		s.keys[key]++
	}
	s.mu.Unlock()
	writeJSON(w, Reply{Cluster: s.Cluster, Host: s.Host, Key: key})
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ServerMain runs a Server until SIGTERM or SIGINT; it is a re-exec helper
// (netns.RunHelpers) and returns the exit code. It prints "listening on ADDR"
// once it accepts connections.
//
//	-listen 10.77.2.11:8080 -cluster west -host pod1
func ServerMain(args []string) int {
	fs := flag.NewFlagSet("load-server", flag.ContinueOnError)
	listen := fs.String("listen", "", "host:port to serve on (required)")
	srv := &Server{}
	fs.StringVar(&srv.Cluster, "cluster", "", "cluster name to answer with")
	fs.StringVar(&srv.Host, "host", "", "host name to answer with")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := serve(*listen, srv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func serve(listen string, h http.Handler, out io.Writer) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("load: listen: %w", err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	fmt.Fprintln(out, "listening on", ln.Addr())
	select {
	case err := <-errc:
		return fmt.Errorf("load: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("load: shutdown: %w", err)
	}
	return nil
}
