package wan

import (
	"context"
	"net"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/wait"
)

// dialFrom dials addr from a given loopback address.
func dialFrom(t *testing.T, network, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second}
	if network == "udp" {
		d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(local)}
	} else {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func udpMinRTT(t *testing.T, c net.Conn, n int) time.Duration {
	t.Helper()
	var rtts []time.Duration
	for range n {
		start := time.Now()
		if err := udpRoundTrip(c, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		rtts = append(rtts, time.Since(start))
	}
	return slices.Min(rtts)
}

// One link in front of a cluster gives each remote cluster its own latency
// and can be cut for one of them only.
func TestPerSourceShapingAndPartition(t *testing.T) {
	echo := newEchoServer(t)
	near := netip.MustParsePrefix("127.0.0.2/32")
	l := startLink(t, LinkConfig{Backends: []string{echo.addr()}, Delay: 15 * time.Millisecond,
		Sources: []SourceShape{{From: near, Forward: Shape{Delay: 5 * time.Millisecond}, Reverse: Shape{Delay: 5 * time.Millisecond}}}})
	addr := l.Addr().String()
	far := dialFrom(t, "udp", "127.0.0.3", addr)
	nearConn := dialFrom(t, "udp", "127.0.0.2", addr)
	farRTT, nearRTT := udpMinRTT(t, far, 10), udpMinRTT(t, nearConn, 10)
	t.Logf("per-source shaping: default 15 ms one-way -> RTT %s; 127.0.0.2 at 5 ms one-way -> RTT %s", farRTT, nearRTT)
	if farRTT < 30*time.Millisecond || farRTT > 33*time.Millisecond || nearRTT < 10*time.Millisecond || nearRTT > 13*time.Millisecond {
		t.Errorf("RTTs %s and %s, want 30-33ms and 10-13ms", farRTT, nearRTT)
	}

	// Cut only 127.0.0.2: UDP and TCP from there stop, the rest flows.
	tcpNear := dialFrom(t, "tcp", "127.0.0.2", addr)
	roundTrip(t, tcpNear, "near before")
	l.PartitionFrom(near)
	if err := udpRoundTrip(nearConn, 200*time.Millisecond); err == nil {
		t.Error("UDP from the cut prefix crossed")
	}
	if _, err := tcpNear.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	if err := readWithin(tcpNear, 4, 200*time.Millisecond); err == nil {
		t.Error("TCP from the cut prefix crossed")
	}
	if err := udpRoundTrip(far, 2*time.Second); err != nil {
		t.Errorf("UDP from another prefix during a per-source partition: %v", err)
	}
	tcpFar := dialFrom(t, "tcp", "127.0.0.3", addr)
	roundTrip(t, tcpFar, "far during the cut")
	if st := l.Stats(); st.Partitioned || !slices.Equal(st.PartitionedFrom, []string{"127.0.0.2/32"}) {
		t.Errorf("stats: partitioned %v from %v", st.Partitioned, st.PartitionedFrom)
	}
	l.HealFrom(near)
	if err := readWithin(tcpNear, 4, 2*time.Second); err != nil {
		t.Errorf("held TCP data after HealFrom: %v", err)
	}
	if err := udpRoundTrip(nearConn, 2*time.Second); err != nil {
		t.Errorf("UDP after HealFrom: %v", err)
	}
}

func TestControlPerSource(t *testing.T) {
	echo := newEchoServer(t)
	l := startLink(t, LinkConfig{Backends: []string{echo.addr()}})
	srv := httptest.NewServer(l.ControlHandler())
	defer srv.Close()
	ctl := Control{URL: srv.URL}
	ctx := context.Background()
	p := netip.MustParsePrefix("10.77.1.0/24")
	want := SourceShape{From: p, Forward: Shape{Delay: 3 * time.Millisecond}, Reverse: Shape{Delay: 4 * time.Millisecond, Loss: 0.5}}
	if err := ctl.SetSourceShape(ctx, want); err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("10.77.1.9")
	if got := (SourceShape{From: p, Forward: l.ShapeFor(Forward, src), Reverse: l.ShapeFor(Reverse, src)}); got != want {
		t.Errorf("source shape = %+v, want %+v", got, want)
	}
	if got := l.ShapeFor(Forward, netip.MustParseAddr("10.77.2.9")); got != (Shape{}) {
		t.Errorf("another source got %v", got)
	}
	if err := ctl.PartitionFrom(ctx, p); err != nil {
		t.Fatal(err)
	}
	if !l.current().blocked(src) || l.current().blocked(netip.MustParseAddr("10.77.2.9")) {
		t.Error("PartitionFrom over HTTP did not cut exactly the prefix")
	}
	if err := ctl.HealFrom(ctx, p); err != nil {
		t.Fatal(err)
	}
	if l.current().blocked(src) {
		t.Error("HealFrom over HTTP did not heal")
	}
}

func TestParseSourceFlag(t *testing.T) {
	ss, err := parseSource("10.77.1.0/24=5ms,1ms,0.02")
	if err != nil {
		t.Fatal(err)
	}
	want := Shape{Delay: 5 * time.Millisecond, Jitter: time.Millisecond, Loss: 0.02}
	if ss.From != netip.MustParsePrefix("10.77.1.0/24") || ss.Forward != want || ss.Reverse != want {
		t.Errorf("parsed %+v", ss)
	}
	for _, bad := range []string{"10.77.1.0/24", "x=5ms", "10.77.1.0/24=fast"} {
		if _, err := parseSource(bad); err == nil {
			t.Errorf("parseSource(%q) accepted", bad)
		}
	}
}

// A UDP flow whose backend answers with ICMP port unreachable is dropped, so
// the client's next datagrams open a flow to the next backend.
func TestUDPFlowMovesOffARefusingBackend(t *testing.T) {
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	echo := newEchoServer(t)
	l := startLink(t, LinkConfig{Backends: []string{deadAddr, echo.addr()}})
	c := dialFrom(t, "udp", "127.0.0.1", l.Addr().String())
	tries := 0
	for {
		tries++
		if err := udpRoundTrip(c, 50*time.Millisecond); err == nil {
			break
		}
		if tries == 20 {
			t.Fatalf("no echo after %d datagrams: stats %+v", tries, l.Stats())
		}
	}
	t.Logf("first echo after %d datagrams (the first flow went to the refusing backend)", tries)
}

func TestFlap(t *testing.T) {
	echo := newEchoServer(t)
	l := startLink(t, LinkConfig{Backends: []string{echo.addr()}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Flap(ctx, 20*time.Millisecond, 20*time.Millisecond) }()
	wait.For(t, 5*time.Second, "3 partitions", func() bool { return l.Stats().Partitions >= 3 })
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Flap = %v", err)
	}
	if l.Partitioned() {
		t.Error("link still partitioned after Flap returned")
	}
}
