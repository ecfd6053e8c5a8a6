package load

import (
	"bufio"
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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/strait-mesh/strait/proxy/proxyproto"
)

// KeyHeader carries a request's idempotency key (also sent as ?key=).
const KeyHeader = "Idempotency-Key"

// journalPrefix starts each line of a Server's journal.
const journalPrefix = "key "

// Reply is the JSON body a Server answers with.
type Reply struct {
	Cluster string `json:"cluster"`
	Host    string `json:"host"`
	Key     string `json:"key"`
	// Caller is the caller's SPIFFE ID from the connection's PROXY v2
	// header (Server.ProxyHeader), "unknown" when the header names none.
	Caller string `json:"caller,omitempty"`
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
	// Journal, when set, receives one line "key <key>" per request that
	// carries a key, written (one Write call, unbuffered) before the answer:
	// a request whose key is in the journal reached the application, even
	// when the server was killed before it answered. See ReadJournal.
	Journal io.Writer
	// ProxyHeader makes ServeListener expect a PROXY v2 header at the start
	// of every connection, as the application behind a Strait proxy gets,
	// and answer with the caller's SPIFFE ID from it.
	ProxyHeader bool

	mu    sync.Mutex
	keys  map[string]int
	stats ServerStats
}

// connKey is the context key of the connection a request came on.
type connKey struct{}

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
		if s.Journal != nil {
			_, _ = io.WriteString(s.Journal, journalPrefix+key+"\n")
		}
	}
	s.mu.Unlock()
	writeJSON(w, Reply{Cluster: s.Cluster, Host: s.Host, Key: key, Caller: callerOf(r.Context())})
}

// callerOf returns the SPIFFE ID of the PROXY header of the request's
// connection, "unknown" when the header names none, "" without a header.
func callerOf(ctx context.Context) string {
	pc, ok := ctx.Value(connKey{}).(*proxyproto.Conn)
	if !ok {
		return ""
	}
	h, err := pc.Header()
	if err != nil {
		return ""
	}
	if id, ok := h.SPIFFEID(); ok {
		return id
	}
	return "unknown"
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

// ReadJournal returns the keys of a Server's journal and how many times each
// was received. Lines that are not journal lines (other output of the same
// process) are skipped.
func ReadJournal(r io.Reader) (map[string]int, error) {
	keys := map[string]int{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if k, ok := strings.CutPrefix(sc.Text(), journalPrefix); ok && k != "" {
			keys[k]++
		}
	}
	if err := sc.Err(); err != nil {
		return keys, fmt.Errorf("load: journal: %w", err)
	}
	return keys, nil
}

// ServerMain runs a Server until SIGTERM or SIGINT; it is a re-exec helper
// (netns.RunHelpers) and returns the exit code. It prints "listening on ADDR"
// once it accepts connections; with -journal, it also prints the journal
// (see Server.Journal) on standard output.
//
//	-listen 10.77.2.11:8080 -cluster west -host pod1 [-proxy-header] [-journal]
func ServerMain(args []string) int {
	fs := flag.NewFlagSet("load-server", flag.ContinueOnError)
	listen := fs.String("listen", "", "host:port to serve on (required)")
	journal := fs.Bool("journal", false, "print \"key <key>\" on standard output for every request, before answering")
	srv := &Server{}
	fs.StringVar(&srv.Cluster, "cluster", "", "cluster name to answer with")
	fs.StringVar(&srv.Host, "host", "", "host name to answer with")
	fs.BoolVar(&srv.ProxyHeader, "proxy-header", false, "expect a PROXY v2 header on every connection (the application of a Strait proxy)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *journal {
		srv.Journal = os.Stdout
	}
	if err := serve(*listen, srv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// ServeListener serves ln until it fails or is closed.
func (s *Server) ServeListener(ln net.Listener) error {
	return s.httpServer().Serve(s.wrap(ln))
}

func (s *Server) wrap(ln net.Listener) net.Listener {
	if s.ProxyHeader {
		return proxyproto.NewListener(ln, proxyproto.ListenerConfig{})
	}
	return ln
}

func (s *Server) httpServer() *http.Server {
	return &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		}}
}

func serve(listen string, srv *Server, out io.Writer) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("load: listen: %w", err)
	}
	hs := srv.httpServer()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(srv.wrap(ln)) }()
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
