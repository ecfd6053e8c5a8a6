package session

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/strait-mesh/strait/trust"
)

// peers is a destination proxy's session server on loopback, in front of
// an echo application, and what callers need to open sessions to it: real
// TLS 1.3 with SPIFFE certificates of one trust domain.
type peers struct {
	t    testing.TB
	ca   *trust.CA
	addr string
	sink string // an application that discards what it reads
	cfg  Config
	// owner is the caller whose certificate each session's handshake
	// presented.
	mu    sync.Mutex
	owner map[*Client]spiffeid.ID
	// gate lets the destination accept one stream to gatedTarget (echo)
	// per value sent.
	gate chan struct{}
}

const (
	testTarget = "echo.default.east.strait:9000"
	sinkTarget = "sink.default.east.strait:9000"
	// gatedTarget is the echo application, accepted once the test sends
	// on peers.gate.
	gatedTarget = "gated.default.east.strait:9000"
)

// newPeers starts the destination side: a session Server whose Accept
// dials an echo server on loopback.
func newPeers(t testing.TB, cfg Config) *peers {
	t.Helper()
	ca, err := trust.NewCA(trust.CAConfig{TrustDomain: spiffeid.RequireTrustDomainFromString("east.test")})
	if err != nil {
		t.Fatal(err)
	}
	p := &peers{t: t, ca: ca, cfg: cfg, owner: map[*Client]spiffeid.ID{}, gate: make(chan struct{})}
	app := listen(t)
	go serveEach(app, func(c net.Conn) { _, _ = io.Copy(c, c) })
	sink := listen(t)
	go serveEach(sink, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	p.sink = sink.Addr().String()
	srv, err := NewServer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	tcfg, err := trust.ServerTLSConfig(trust.TLSConfig{SVID: p.svid("echo"), Bundles: ca, Authorizer: tlsconfig.AuthorizeAny()})
	if err != nil {
		t.Fatal(err)
	}
	tcfg.NextProtos = []string{ALPN}
	ln := listen(t)
	p.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				conn := tls.Server(raw, tcfg)
				if err := conn.HandshakeContext(ctx); err != nil {
					_ = raw.Close()
					return
				}
				go func() { <-ctx.Done(); _ = conn.Close() }()
				srv.ServeConn(ctx, conn, func(ctx context.Context, target string) (net.Conn, func(Result), error) {
					to := app.Addr().String()
					switch target {
					case sinkTarget:
						to = p.sink
					case gatedTarget:
						select {
						case <-p.gate:
						case <-ctx.Done():
							return nil, nil, ctx.Err()
						}
					}
					c, err := net.Dial("tcp", to)
					return c, nil, err
				})
			})
		}
	})
	return p
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// svid issues the SVID of service account sa.
func (p *peers) svid(sa string) *x509svid.SVID {
	p.t.Helper()
	id, err := trust.WorkloadID(p.ca.TrustDomain(), "default", sa)
	if err != nil {
		p.t.Fatal(err)
	}
	s, err := p.ca.IssueX509SVID(id, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	return s
}

// dial opens a session to the destination as caller, the way the proxy
// does: a TLS handshake offering ALPN, then NewClient.
func (p *peers) dial(caller *x509svid.SVID, cfg Config) *Client {
	p.t.Helper()
	tcfg, err := trust.ClientTLSConfig(trust.TLSConfig{SVID: caller, Bundles: p.ca, Authorizer: tlsconfig.AuthorizeAny()})
	if err != nil {
		p.t.Fatal(err)
	}
	tcfg.NextProtos = []string{ALPN}
	start := time.Now()
	conn, err := tls.Dial("tcp", p.addr, tcfg)
	if err != nil {
		p.t.Fatal(err)
	}
	c, err := NewClient(conn, cfg, nil, time.Since(start), caller.Certificates[0].NotAfter)
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { _ = c.Close() })
	p.mu.Lock()
	p.owner[c] = caller.ID
	p.mu.Unlock()
	return c
}

// ownerOf is the caller whose handshake opened c.
func (p *peers) ownerOf(c *Client) spiffeid.ID {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.owner[c]
}

// open opens a stream for caller through pool as the proxy does (a pooled
// session, else a new one), and checks that it carries bytes both ways.
func (p *peers) open(pool *Pool, caller *x509svid.SVID) *Stream {
	p.t.Helper()
	key := Key{Caller: caller.ID, Path: "gateway", Addr: p.addr, Name: "echo.default.east.strait"}
	st := pool.Open(key, testTarget, nil)
	if st == nil {
		st = pool.Add(key, p.dial(caller, pool.Config()), testTarget)
	}
	msg := []byte("ping " + caller.ID.String())
	if _, err := st.Write(msg); err != nil {
		p.t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(st, got); err != nil || !bytes.Equal(got, msg) {
		p.t.Fatalf("echo = %q, %v", got, err)
	}
	return st
}

// TestPoolSpreads: concurrent streams of one key go to several sessions,
// StreamsPerSession each, until the key has MaxSessions; past that, to the
// least loaded session. The old pool put every stream on one session
// until MaxStreams (8 bulk streams shared one TLS connection).
func TestPoolSpreads(t *testing.T) {
	tests := []struct {
		name                            string
		cfg                             Config
		streams                         int
		wantSessions, wantMaxPerSession int
	}{
		{"one stream, one session", Config{}, 1, 1, 1},
		{"8 streams, defaults: one session", Config{}, 8, 1, 8},
		{"12 streams, defaults: 2 sessions, 8 and 4", Config{}, 12, 2, 8},
		{"8 streams, 2 per session", Config{StreamsPerSession: 2}, 8, 4, 2},
		{"8 streams, 1 per session", Config{StreamsPerSession: 1}, 8, 8, 1},
		{"8 streams, at most 3 sessions: least loaded past that", Config{StreamsPerSession: 1, MaxSessions: 3}, 8, 3, 3},
		{"12 streams, 4 per session", Config{StreamsPerSession: 4}, 12, 3, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPeers(t, tt.cfg)
			pool := NewPool(tt.cfg, nil)
			t.Cleanup(pool.Close)
			alice := p.svid("alice")
			perSession := map[*Client]int{}
			for range tt.streams {
				st := p.open(pool, alice)
				defer st.Close()
				perSession[st.Session()]++
			}
			if len(perSession) != tt.wantSessions {
				t.Errorf("%d streams went to %d sessions, want %d", tt.streams, len(perSession), tt.wantSessions)
			}
			for c, n := range perSession {
				if n > tt.wantMaxPerSession {
					t.Errorf("a session carries %d streams, want at most %d", n, tt.wantMaxPerSession)
				}
				if c.Streams() != n {
					t.Errorf("a session counts %d streams, carries %d", c.Streams(), n)
				}
			}
		})
	}
}

// TestFirstStreamPipelined: with pipelining off (Pipeline negative), the
// stream a session is opened for sends its bytes with its request, before
// the destination answers (its handshake has just proved the path, as a
// per-connection handshake does), and a later stream waits for its answer.
// Before, the first stream waited too, and a new session cost three round
// trips where a new connection costs two.
func TestFirstStreamPipelined(t *testing.T) {
	cfg := Config{Pipeline: -1}
	p := newPeers(t, cfg)
	pool := NewPool(cfg, nil)
	t.Cleanup(pool.Close)
	alice := p.svid("alice")
	key := Key{Caller: alice.ID, Path: "gateway", Addr: p.addr, Name: "gated.default.east.strait"}

	// write writes msg on st and reports whether st had its answer when the
	// write returned; it fails the test when the write takes longer than
	// limit.
	write := func(st *Stream, msg []byte, limit time.Duration, whileWaiting func()) (answered bool) {
		t.Helper()
		done := make(chan bool, 1)
		go func() {
			_, err := st.Write(msg)
			if err != nil {
				t.Errorf("write: %v", err)
			}
			done <- st.answered()
		}()
		if whileWaiting != nil {
			whileWaiting()
		}
		select {
		case a := <-done:
			return a
		case <-time.After(limit):
			t.Fatalf("write of %q took more than %s", msg, limit)
			return false
		}
	}
	echo := func(st *Stream, msg []byte) {
		t.Helper()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(st, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo = %q, %v; want %q", got, err, msg)
		}
	}

	first := pool.Add(key, p.dial(alice, cfg), gatedTarget)
	defer first.Close()
	// The destination holds the stream unanswered until the gate opens,
	// after the write returned: a held write would never return.
	if write(first, []byte("first"), 5*time.Second, nil) {
		t.Error("the first stream had an answer before the destination accepted it")
	}
	p.gate <- struct{}{}
	echo(first, []byte("first"))

	second := pool.Open(key, gatedTarget, nil)
	if second == nil {
		t.Fatal("no room for a second stream on the session")
	}
	defer second.Close()
	if second.Session() != first.Session() {
		t.Fatal("the second stream went to another session")
	}
	if !write(second, []byte("second"), 5*time.Second, func() { p.gate <- struct{}{} }) {
		t.Error("the second stream's write returned before its answer, with pipelining off")
	}
	echo(second, []byte("second"))
}

// TestPoolOpenExisting: when the new session Open asked for cannot be
// opened, OpenExisting puts the stream on a session of the key that has
// room below MaxStreams, the least loaded, and on none of another caller.
func TestPoolOpenExisting(t *testing.T) {
	cfg := Config{StreamsPerSession: 1, MaxStreams: 3}
	p := newPeers(t, cfg)
	pool := NewPool(cfg, nil)
	t.Cleanup(pool.Close)
	alice, bob := p.svid("alice"), p.svid("bob")
	keyOf := func(s *x509svid.SVID) Key {
		return Key{Caller: s.ID, Path: "gateway", Addr: p.addr, Name: "echo.default.east.strait"}
	}
	defer p.open(pool, bob).Close()
	if st := pool.OpenExisting(keyOf(alice), testTarget, nil); st != nil {
		t.Fatalf("alice has no session, yet OpenExisting opened a stream on one of %s", p.ownerOf(st.Session()))
	}
	first := p.open(pool, alice)
	defer first.Close()
	if st := pool.Open(keyOf(alice), testTarget, nil); st != nil {
		t.Fatal("Open put a second stream on a session of StreamsPerSession 1")
	}
	for i := range 2 {
		st := pool.OpenExisting(keyOf(alice), testTarget, nil)
		if st == nil {
			t.Fatalf("OpenExisting %d: no stream, want one on alice's session (MaxStreams 3)", i)
		}
		defer st.Close()
		if st.Session() != first.Session() {
			t.Errorf("OpenExisting %d: went to a session of %s, want alice's", i, p.ownerOf(st.Session()))
		}
	}
	if st := pool.OpenExisting(keyOf(alice), testTarget, nil); st != nil {
		t.Errorf("OpenExisting past MaxStreams opened a stream (%d on the session)", st.Session().Streams())
	}
}

// TestPoolBurstSpreads: a burst of connections opened at once (iperf3's
// streams) while a session with room is open goes to more than one
// session, and each session carries the
// streams of the identity that made its handshake only, even when another
// caller's sessions have room.
func TestPoolBurstSpreads(t *testing.T) {
	p := newPeers(t, Config{})
	pool := NewPool(Config{}, nil)
	t.Cleanup(pool.Close)
	callers := []*x509svid.SVID{p.svid("alice"), p.svid("bob")}
	// Each has a session with room: the old pool put every later stream
	// of a caller on it.
	defer p.open(pool, callers[0]).Close()
	defer p.open(pool, callers[1]).Close()
	type opened struct {
		caller spiffeid.ID
		st     *Stream
	}
	var mu sync.Mutex
	var got []opened
	var wg sync.WaitGroup
	for i := range 16 {
		caller := callers[i%4/3] // 12 of alice's, 4 of bob's
		wg.Go(func() {
			st := p.open(pool, caller)
			mu.Lock()
			got = append(got, opened{caller.ID, st})
			mu.Unlock()
		})
	}
	wg.Wait()
	sessions := map[spiffeid.ID]map[*Client]bool{}
	for _, o := range got {
		defer o.st.Close()
		if owner := p.ownerOf(o.st.Session()); owner != o.caller {
			t.Errorf("a stream of %s went to a session of %s", o.caller, owner)
		}
		if sessions[o.caller] == nil {
			sessions[o.caller] = map[*Client]bool{}
		}
		sessions[o.caller][o.st.Session()] = true
	}
	if n := len(sessions[callers[0].ID]); n < 2 {
		t.Errorf("12 concurrent streams of alice went to %d session(s), want more than one", n)
	}
}

// TestPoolClosesExtraSessions: once the streams of a burst have ended, the
// sessions the key no longer needs close after extraIdle, and one stays
// for the next connection.
func TestPoolClosesExtraSessions(t *testing.T) {
	p := newPeers(t, Config{})
	pool := NewPool(Config{}, nil)
	t.Cleanup(pool.Close)
	alice := p.svid("alice")
	key := Key{Caller: alice.ID, Path: "gateway", Addr: p.addr, Name: "echo.default.east.strait"}
	var streams []*Stream
	for range 12 {
		streams = append(streams, p.open(pool, alice))
	}
	if n := pool.Len(key); n < 2 {
		t.Fatalf("12 streams on %d session(s), want several", n)
	}
	for _, st := range streams {
		_ = st.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for pool.Len(key) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions pooled 10s after their streams ended, want 1", pool.Len(key))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The one left takes the next stream.
	st := p.open(pool, alice)
	defer st.Close()
	if n := pool.Len(key); n != 1 {
		t.Errorf("next stream: %d sessions, want the one left", n)
	}
}

// BenchmarkBulk moves 32 KiB writes from callers to a discarding
// application over loopback, through pooled sessions ("sessions", streams
// at once) or over as many plain TLS connections ("perconn", as
// per-connection mode): the CPU per byte of the session layer.
//
// "sessions-per-N" puts at most N streams on a session
// (StreamsPerSession): "sessions-per-8", the default, carries 8 streams
// on one session, as the pool did before it spread.
func BenchmarkBulk(b *testing.B) {
	for _, streams := range []int{1, 8} {
		for _, mode := range []string{"sessions-per-8", "sessions-per-2", "sessions-per-1", "perconn"} {
			b.Run(fmt.Sprintf("%s/%d", mode, streams), func(b *testing.B) {
				cfg := Config{}
				if n, ok := strings.CutPrefix(mode, "sessions-per-"); ok {
					cfg.StreamsPerSession, _ = strconv.Atoi(n)
				}
				p := newPeers(b, cfg)
				pool := NewPool(cfg, nil)
				b.Cleanup(pool.Close)
				caller := p.svid("alice")
				key := Key{Caller: caller.ID, Path: "gateway", Addr: p.addr, Name: "sink"}
				conns := make([]net.Conn, streams)
				for i := range conns {
					if mode == "perconn" {
						conns[i] = p.plainSink(caller)
						continue
					}
					st := pool.Open(key, sinkTarget, nil)
					if st == nil {
						st = pool.Add(key, p.dial(caller, pool.Config()), sinkTarget)
					}
					conns[i] = st
				}
				buf := make([]byte, 32<<10)
				b.SetBytes(int64(len(buf)))
				cpu0 := processCPU(b)
				b.ResetTimer()
				var wg sync.WaitGroup
				per := b.N / streams
				for i, c := range conns {
					n := per
					if i == 0 {
						n += b.N % streams
					}
					wg.Go(func() {
						for range n {
							if _, err := c.Write(buf); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				// Both sides run in this process: CPU per byte moved is
				// what the machine's load changes least.
				b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N*len(buf)), "cpu-ns/B")
				for _, c := range conns {
					_ = c.Close()
				}
			})
		}
	}
}

// plainSink is a TLS connection to the discarding application, as the
// destination proxy's per-connection mode relays one: TLS terminated in
// front of it, relayed with 32 KiB copies.
func (p *peers) plainSink(caller *x509svid.SVID) net.Conn {
	p.t.Helper()
	scfg, err := trust.ServerTLSConfig(trust.TLSConfig{SVID: p.svid("echo"), Bundles: p.ca, Authorizer: tlsconfig.AuthorizeAny()})
	if err != nil {
		p.t.Fatal(err)
	}
	ln := listen(p.t)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		conn := tls.Server(raw, scfg)
		defer conn.Close()
		app, err := net.Dial("tcp", p.sink)
		if err != nil {
			return
		}
		defer app.Close()
		_, _ = io.CopyBuffer(app, onlyReader{conn}, make([]byte, 32<<10))
	}()
	ccfg, err := trust.ClientTLSConfig(trust.TLSConfig{SVID: caller, Bundles: p.ca, Authorizer: tlsconfig.AuthorizeAny()})
	if err != nil {
		p.t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", ln.Addr().String(), ccfg)
	if err != nil {
		p.t.Fatal(err)
	}
	return conn
}

// processCPU is the CPU time the process has used (user and system).
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serveEach runs handle on each connection ln accepts, in its own
// goroutine, and closes the connection after it; it returns when ln is
// closed.
func serveEach(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}
