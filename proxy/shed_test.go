package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// silentGateway accepts connections and reads them without ever answering,
// as an egress gateway whose process has stopped (or that is starved of CPU)
// does once the kernel has completed the handshake.
func silentGateway(t *testing.T) *fakeGateway {
	g := &fakeGateway{ln: listen(t)}
	go g.serve(func(c net.Conn) {
		defer c.Close()
		_, _ = io.Copy(io.Discard, c)
	})
	return g
}

// TestConnectBudget: an outbound connection gets Config.ConnectTimeout to
// reach a destination, counted from the kernel's accept. One that waited
// longer than that in the listener's accept queue (the proxy was stopped or
// starved of CPU) is reset without a single attempt; one whose attempts
// outlast it (here two silent gateways, each of which would hold an attempt
// for the whole handshake timeout) is reset when it runs out, and no
// attempt starts after it. Either way the caller sees a reset and the
// connection is counted under its reason. Before the budget, the proxy
// dialed and handshook such connections whatever their age, and held one
// for two full handshake timeouts (10 s).
func TestConnectBudget(t *testing.T) {
	const budget = 400 * time.Millisecond
	tests := []struct {
		name string
		// queued is how long the connection waits in the accept queue
		// before the proxy serves it.
		queued   time.Duration
		reason   string
		attempts int64 // connections the gateways accept
	}{
		{name: "stale in the accept queue", queued: budget + 200*time.Millisecond, reason: shedStale, attempts: 0},
		{name: "budget runs out during the attempts", queued: 0, reason: shedDeadline, attempts: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			gw1, gw2 := silentGateway(t), silentGateway(t)
			w.reg.setBase(gateway(west, "gw1", gw1.Addr()), gateway(west, "gw2", gw2.Addr()), export(east))
			client := w.run(Config{
				Cluster: west, ServiceAccount: "client",
				Upstreams:      []Upstream{{Service: echoKey, Port: 9000, ListenAddr: "127.0.0.1:0"}},
				SVIDs:          w.svid(west, "client"),
				ConnectTimeout: budget,
			})

			// The caller's connection, served by the proxy after it
			// waited tc.queued in an accept queue: the proxy's own
			// listener for a connection served at once, a listener of
			// the test's that holds it first for a queued one.
			ln := client.ups[0]
			if tc.queued > 0 {
				ln = listen(t)
			}
			caller, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer caller.Close()
			if _, err := caller.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if tc.queued > 0 {
				// The fault: nobody accepts the connection for
				// tc.queued (a stopped proxy).
				timer := time.NewTimer(tc.queued)
				<-timer.C
				app, err := ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				client.serveOutbound(context.Background(), client.cfg.Upstreams[0], app)
			}

			_ = caller.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := caller.Read(make([]byte, 16))
			took := time.Since(start)
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("caller read %d bytes, %v; want a reset", n, err)
			}
			if took > tc.queued+budget+time.Second {
				t.Errorf("caller reset %s after it connected, want within the budget %s (+1 s)", took.Round(time.Millisecond), budget)
			}
			eventually(t, 5*time.Second, "shed counted", func() bool {
				return testutil.ToFloat64(client.metrics.shed.WithLabelValues(tc.reason)) == 1
			})
			if got := testutil.ToFloat64(client.metrics.connections.WithLabelValues(dirOutbound, resultShed)); got != 1 {
				t.Errorf("connections_total{result=shed} = %v, want 1", got)
			}
			if got := gw1.accepted.Load() + gw2.accepted.Load(); got != tc.attempts {
				t.Errorf("gateways accepted %d connections, want %d (no attempt past the budget)", got, tc.attempts)
			}
		})
	}
}

// TestAcceptedAt: a connection's accept time is when the kernel completed
// its handshake, not when the proxy accepted it from the queue.
func TestAcceptedAt(t *testing.T) {
	const queued = 300 * time.Millisecond
	ln := listen(t)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dialed := time.Now()
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	timer := time.NewTimer(queued)
	<-timer.C
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	got := acceptedAt(s, now)
	// TCP_INFO counts milliseconds of jiffies: allow a few.
	if d := got.Sub(dialed); d < -20*time.Millisecond || d > 20*time.Millisecond {
		t.Errorf("acceptedAt = dial %+v, want the dial time (±20ms); accepted from the queue %s after it", d, now.Sub(dialed))
	}
	if got := acceptedAt(pipeConn(t), now); !got.Equal(now) {
		t.Errorf("acceptedAt(non-TCP) = %v, want now", got)
	}
}

// pipeConn is a connection that is not TCP.
func pipeConn(t *testing.T) net.Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a
}
