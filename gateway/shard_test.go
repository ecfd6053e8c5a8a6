package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go"

	"github.com/strait-mesh/strait/gateway/probe"
)

// TestConnsPerRemoteGatewayConfig: zero means GOMAXPROCS capped at
// MaxDefaultConnsPerRemoteGateway; a negative count, or one a remote
// ingress with the default MaxConnsPerPeer would refuse, is a
// configuration error reported with the others.
func TestConnsPerRemoteGatewayConfig(t *testing.T) {
	for _, tt := range []struct {
		name       string
		gomaxprocs int
		conns      int
		maxPerPeer int
		want       int    // after defaults, when valid
		wantErr    string // in the multierror
	}{
		{name: "default on 1 core", gomaxprocs: 1, want: 1},
		{name: "default on 2 cores", gomaxprocs: 2, want: 2},
		{name: "default on 4 cores", gomaxprocs: 4, want: 4},
		{name: "default capped on 16 cores", gomaxprocs: 16, want: MaxDefaultConnsPerRemoteGateway},
		{name: "set", gomaxprocs: 2, conns: 8, want: 8},
		{name: "the most", gomaxprocs: 2, conns: DefaultMaxConnsPerPeer, want: DefaultMaxConnsPerPeer},
		{name: "above the own ingress' MaxConnsPerPeer", gomaxprocs: 2, conns: 5, maxPerPeer: 4, want: 5},
		{name: "negative", gomaxprocs: 2, conns: -1, wantErr: "ConnsPerRemoteGateway is -1"},
		{name: "above DefaultMaxConnsPerPeer", gomaxprocs: 2, conns: DefaultMaxConnsPerPeer + 1, wantErr: "ConnsPerRemoteGateway is 65, want 1 to 64"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(tt.gomaxprocs))
			w := newWorld(t, "a")
			cfg := w.config("a", "a1", "")
			cfg.ConnsPerRemoteGateway, cfg.MaxConnsPerPeer = tt.conns, tt.maxPerPeer
			if got := cfg.withDefaults().ConnsPerRemoteGateway; tt.wantErr == "" && got != tt.want {
				t.Errorf("ConnsPerRemoteGateway %d defaults to %d, want %d", tt.conns, got, tt.want)
			}
			cfg.Cluster = "Bad_Name" // another problem, reported beside it
			_, err := New(cfg)
			var merr *multierror.Error
			if !errors.As(err, &merr) {
				t.Fatalf("New: %v, want a multierror", err)
			}
			want := 1
			if tt.wantErr != "" {
				want = 2
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not say %q", err, tt.wantErr)
				}
			}
			if len(merr.Errors) != want {
				t.Errorf("got %d problems, want %d: %v", len(merr.Errors), want, err)
			}
		})
	}
}

// TestPoolShards: a gateway holds ConnsPerRemoteGateway QUIC connections
// to a remote gateway (the remote ingress sees them all), puts each new
// stream on the least loaded, and reports them: connections and streams
// per connection as metrics, /links across all of them, path probes.
func TestPoolShards(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("%d connections", n), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, "a", "b")
			w.export("b", "echo", 9000, "spiffe://a.test")
			w.endpoint("b", "echo", "e1", echoServer(t))
			b := w.start(shardConfig(w, "b", n))
			a := w.start(shardConfig(w, "a", n))
			hello := clientHello(t, "9000.echo.default.any.strait")

			if err := finishStream(mustOpen(t, a, hello), payloadFor(0)); err != nil {
				t.Fatal(err)
			}
			conns := waitShards(t, a, n)
			waitIdle(t, "the first stream to end", conns)
			const perConn = 3
			held, slots := openTracked(t, a, hello, perConn*n)
			for i, c := range conns {
				if got := c.streams.Load(); got != perConn {
					t.Errorf("connection %d carries %d streams, want %d (least loaded first)", i, got, perConn)
				}
			}
			if got := ingressConns(b); got != n {
				t.Errorf("the remote ingress holds %d connections, want %d", got, n)
			}
			poll(t, "metrics of every connection", func() error {
				if got := testutil.ToFloat64(a.m.peerConns.WithLabelValues("b", "b1")); got != float64(n) {
					return fmt.Errorf("strait_gateway_peer_connections %v, want %d", got, n)
				}
				for i := range n {
					if got := testutil.ToFloat64(a.m.connStreams.WithLabelValues("b", "b1", strconv.Itoa(i))); got != perConn {
						return fmt.Errorf("strait_gateway_peer_connection_open_streams{conn=%d} %v, want %d", i, got, perConn)
					}
				}
				ls := a.Links().Links
				if len(ls) != 1 || !ls[0].Alive || ls[0].OpenStreams != int64(perConn*n) {
					return fmt.Errorf("links %+v, want b1 alive with %d open streams", ls, perConn*n)
				}
				return nil
			})
			nonce := make([]byte, probe.NonceSize)
			_, _ = rand.Read(nonce)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if res := a.Probe(ctx, "b", "", nonce); res.Error != "" {
				t.Errorf("path probe over the sharded pool: %s at layer %s", res.Error, res.Layer)
			}
			// The streams of connection 0 end: the next ones all go to it,
			// the least loaded (not in turn).
			for i, c := range held {
				if slots[i] == 0 {
					if err := finishStream(c, payloadFor(i)); err != nil {
						t.Errorf("stream %d on connection 0: %v", i, err)
					}
				}
			}
			poll(t, "connection 0 idle", func() error {
				if got := conns[0].streams.Load(); got != 0 {
					return fmt.Errorf("%d streams", got)
				}
				return nil
			})
			more, moreSlots := openTracked(t, a, hello, perConn)
			for i, s := range moreSlots {
				if s != 0 {
					t.Errorf("new stream %d went to connection %d (%d streams), want connection 0 (0 streams before them)", i, s, perConn)
				}
			}
			for i, c := range append(held, more...) {
				if i < len(held) && slots[i] == 0 {
					continue
				}
				if err := finishStream(c, payloadFor(i)); err != nil {
					t.Errorf("stream %d: %v", i, err)
				}
			}
		})
	}
}

// TestPoolShardReplaced: when one of the pooled connections closes, the
// streams on the others go on, new streams go to the others, and the pool
// dials its slot again, which then carries streams; a failure is counted
// unless the remote gateway asked for a new connection.
func TestPoolShardReplaced(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		n        int
		code     quic.ApplicationErrorCode
		failures float64
		// The siblings take no new stream either (their streams go on)
		// and are replaced: the peer ends connections at their age or
		// certificate's expiry, which siblings share.
		siblingsRetired bool
	}{
		{name: "closed with an error, 2 connections", n: 2, code: 0x2ff, failures: 1},
		{name: "closed with an error, 3 connections", n: 3, code: 0x2ff, failures: 1},
		{name: "closed by a refusal", n: 2, code: ConnErrRefused, failures: 1},
		{name: "closed for reconnect", n: 2, code: ConnErrReconnect, failures: 0, siblingsRetired: true},
		{name: "closed for reconnect, 3 connections", n: 3, code: ConnErrReconnect, failures: 0, siblingsRetired: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, "a", "b")
			w.export("b", "echo", 9000, "spiffe://a.test")
			w.endpoint("b", "echo", "e1", echoServer(t))
			b := w.start(shardConfig(w, "b", tt.n))
			a := w.start(shardConfig(w, "a", tt.n))
			hello := clientHello(t, "9000.echo.default.any.strait")
			if err := finishStream(mustOpen(t, a, hello), payloadFor(0)); err != nil {
				t.Fatal(err)
			}
			old := waitShards(t, a, tt.n)
			// openTracked tells a stream's connection by its count going
			// up by one: the first stream's release, which may come after
			// its client saw the echo, must not land in between.
			waitIdle(t, "the first stream to end", old)
			held, slots := openTracked(t, a, hello, 2*tt.n)

			// The remote ingress closes one of the connections.
			b.connsMu.Lock()
			var victim *quic.Conn
			for c := range b.conns {
				victim = c
				break
			}
			b.connsMu.Unlock()
			_ = victim.CloseWithError(tt.code, "closed by the test")
			dead := -1
			poll(t, "the closed connection seen by the pool", func() error {
				for i, c := range old {
					if c.Context().Err() != nil {
						dead = i
						return nil
					}
				}
				return errors.New("every pooled connection still open")
			})
			for i, c := range old {
				if i != dead && c.Context().Err() != nil {
					t.Errorf("connection %d closed with connection %d", i, dead)
				}
			}
			for i, c := range held {
				err := finishStream(c, payloadFor(i))
				switch {
				case slots[i] != dead && err != nil:
					t.Errorf("stream %d on connection %d, which stayed open: %v", i, slots[i], err)
				case slots[i] == dead && err == nil:
					t.Errorf("stream %d on the closed connection %d went on", i, dead)
				}
			}
			for i := range 2 * tt.n {
				if err := finishStream(mustOpen(t, a, hello), payloadFor(i)); err != nil {
					t.Errorf("new stream %d after a connection closed: %v", i, err)
				}
			}
			poll(t, "the closed connection's slot dialed again", func() error {
				cur := shards(a)
				for i, c := range cur {
					if c == nil || !c.alive() {
						return fmt.Errorf("slot %d holds no live connection", i)
					}
					if want := i == dead || tt.siblingsRetired; want != (c != old[i]) {
						return fmt.Errorf("slot %d: replaced %v, want %v", i, c != old[i], want)
					}
				}
				if got := ingressConns(b); got != tt.n {
					return fmt.Errorf("the remote ingress holds %d connections, want %d", got, tt.n)
				}
				return nil
			})
			poll(t, "every stream ended", func() error {
				for i, c := range shards(a) {
					if n := c.streams.Load(); n != 0 {
						return fmt.Errorf("connection %d still counts %d streams", i, n)
					}
				}
				return nil
			})
			// Idle connections: one new stream each, the new one too.
			if _, slots = openTracked(t, a, hello, tt.n); !slices.Contains(slots, dead) {
				t.Errorf("%d new streams went to connections %v, none to the new one in slot %d", tt.n, slots, dead)
			}
			if got := testutil.ToFloat64(a.m.peerFailures.WithLabelValues("b", "b1")); got != tt.failures {
				t.Errorf("strait_gateway_peer_failures_total %v, want %v", got, tt.failures)
			}
		})
	}
}

// shardConfig is a gateway of cluster with n connections per remote
// gateway.
func shardConfig(w *world, cluster string, n int) Config {
	cfg := w.config(cluster, cluster+"1", "")
	cfg.ConnsPerRemoteGateway = n
	return cfg
}

// shards returns the connections in a's slots for b/b1 (nil: empty).
func shards(a *running) []*pconn {
	a.pool.mu.Lock()
	pr := a.pool.peers["b/b1"]
	a.pool.mu.Unlock()
	if pr == nil {
		return nil
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	out := make([]*pconn, len(pr.shards))
	for i, s := range pr.shards {
		out[i] = s.conn
	}
	return out
}

// waitShards waits until all n slots of a's pool for b/b1 hold a live
// connection and returns them.
func waitShards(t *testing.T, a *running, n int) []*pconn {
	t.Helper()
	var conns []*pconn
	poll(t, fmt.Sprintf("%d pooled connections", n), func() error {
		conns = shards(a)
		if len(conns) != n {
			return fmt.Errorf("%d slots", len(conns))
		}
		for i, c := range conns {
			if c == nil || !c.alive() {
				return fmt.Errorf("slot %d empty", i)
			}
		}
		return nil
	})
	return conns
}

// waitIdle waits until none of conns counts a stream: a stream's relay
// ends, and releases its count, after its client saw the echo.
func waitIdle(t *testing.T, what string, conns []*pconn) {
	t.Helper()
	poll(t, what, func() error {
		for i, c := range conns {
			if got := c.streams.Load(); got != 0 {
				return fmt.Errorf("connection %d still carries %d streams", i, got)
			}
		}
		return nil
	})
}

// openTracked opens n streams one after the other and returns them with
// the slot of the pooled connection each went to. No other stream may end
// on these connections meanwhile (see waitIdle): a stream is told by its
// connection's count going up by one.
func openTracked(t *testing.T, a *running, hello []byte, n int) ([]*net.TCPConn, []int) {
	t.Helper()
	var held []*net.TCPConn
	var slots []int
	t.Cleanup(func() {
		for _, c := range held {
			_ = c.Close()
		}
	})
	for range n {
		before := shards(a)
		counts := make([]int64, len(before))
		for i, c := range before {
			if c != nil {
				counts[i] = c.streams.Load()
			}
		}
		held = append(held, mustOpen(t, a, hello))
		slot := -1
		after := shards(a)
		countsAfter := make([]int64, len(after))
		for i, c := range after {
			if c != nil {
				countsAfter[i] = c.streams.Load()
			}
			if c != nil && c == before[i] && countsAfter[i] == counts[i]+1 {
				slot = i
			}
		}
		if slot < 0 {
			t.Fatalf("stream %d: no pooled connection counted it: streams per connection %v before, %v after", len(held)-1, counts, countsAfter)
		}
		slots = append(slots, slot)
	}
	return held, slots
}

// ingressConns is the number of connections b's ingress holds.
func ingressConns(b *running) int {
	b.connsMu.Lock()
	defer b.connsMu.Unlock()
	return len(b.conns)
}

// poll calls check until it returns nil, and fails the test with its last
// error after 20 seconds.
func poll(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not a wait for state
	}
}
