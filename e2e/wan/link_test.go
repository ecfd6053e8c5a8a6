package wan

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/wait"
)

const oneWay = 15 * time.Millisecond

func TestNewLinkValidatesEverything(t *testing.T) {
	_, err := NewLink(LinkConfig{Listen: "nope", Delay: -1, Loss: 2, Backends: []string{"x"}})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"listen", "backend", "delay", "loss"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestTCPAddedRTT(t *testing.T) {
	echo := newEchoServer(t)
	l := startLink(t, LinkConfig{Backends: []string{echo.addr()}, Delay: oneWay})
	checkAddedRTT(t, "TCP", tcpRTT(t, echo.addr(), 20), tcpRTT(t, l.Addr().String(), 50))
}

func TestUDPAddedRTT(t *testing.T) {
	echo := newEchoServer(t)
	l := startLink(t, LinkConfig{Backends: []string{echo.addr()}, Delay: oneWay})
	checkAddedRTT(t, "UDP", udpRTT(t, echo.addr(), 20), udpRTT(t, l.Addr().String(), 50))
}

// checkAddedRTT compares round trips through a link with direct ones. The
// fastest sample shows what the emulator adds (a loaded machine only adds
// scheduling delay on top): it must be the configured 2*oneWay, never less,
// and at most 2 ms more. The median is reported.
func checkAddedRTT(t *testing.T, proto string, direct, via []time.Duration) {
	t.Helper()
	base := slices.Min(direct)
	added := slices.Min(via) - base
	t.Logf("%s: configured one-way %s (RTT +%s); measured RTT direct min %s; via link min %s p50 %s p99 %s; added (min) %s, added (p50) %s",
		proto, oneWay, 2*oneWay, base, slices.Min(via), median(via), percentile(via, 0.99), added, median(via)-median(direct))
	if added < 2*oneWay-100*time.Microsecond || added > 2*oneWay+2*time.Millisecond {
		t.Errorf("added RTT %s, want %s to +2ms", added, 2*oneWay)
	}
}

func TestAsymmetricDelayAndSetDelay(t *testing.T) {
	echo := newEchoServer(t)
	l := startLink(t, LinkConfig{Backends: []string{echo.addr()}, Delay: 5 * time.Millisecond,
		Reverse: &Shape{Delay: 20 * time.Millisecond}})
	if got := slices.Min(udpRTT(t, l.Addr().String(), 10)); got < 25*time.Millisecond || got > 28*time.Millisecond {
		t.Errorf("RTT with 5ms forward + 20ms reverse = %s, want 25-30ms", got)
	}
	if err := l.SetDelay(2 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := slices.Min(udpRTT(t, l.Addr().String(), 10)); got < 4*time.Millisecond || got > 7*time.Millisecond {
		t.Errorf("RTT after SetDelay(2ms) = %s, want 4-8ms", got)
	}
}

func TestUDPLoss(t *testing.T) {
	const n, loss = 5000, 0.1
	echo := newEchoServer(t)
	// Loss only on the way out, so every loss is a missing echo.
	l := startLink(t, LinkConfig{Backends: []string{echo.addr()}, Loss: loss, Reverse: &Shape{}})
	c, err := net.Dial("udp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan int)
	go func() {
		buf := make([]byte, 64)
		count := 0
		for {
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, err := c.Read(buf); err != nil {
				got <- count
				return
			}
			count++
		}
	}()
	msg := make([]byte, 32)
	for i := range n {
		binary.BigEndian.PutUint32(msg, uint32(i))
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 { // pace so that no socket buffer overflows
			wait.For(t, 2*time.Second, "echoes", func() bool {
				st := l.Stats()
				return st.UDPDatagramsReverse+st.UDPDroppedLoss >= int64(i+1)-5
			})
		}
	}
	received := <-got
	st := l.Stats()
	ratio := 1 - float64(received)/n
	t.Logf("UDP loss: configured %.3f, measured %.4f over %d datagrams (%d echoed, %d dropped by the link)",
		loss, ratio, n, received, st.UDPDroppedLoss)
	// 5 sigma of a binomial(5000, 0.1) is 0.021.
	if ratio < loss-0.021 || ratio > loss+0.021 {
		t.Errorf("loss ratio %.4f, want %.3f ± 0.021", ratio, loss)
	}
	if int64(received) != n-st.UDPDroppedLoss {
		t.Errorf("received %d echoes, want %d sent minus %d dropped", received, n, st.UDPDroppedLoss)
	}
}

func TestUDPOrderWithoutJitter(t *testing.T) {
	echo := newEchoServer(t)
	l := startLink(t, LinkConfig{Backends: []string{echo.addr()}, Delay: 2 * time.Millisecond})
	c, err := net.Dial("udp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 200 // a burst that fits the default socket buffers
	msg := make([]byte, 4)
	for i := range n {
		binary.BigEndian.PutUint32(msg, uint32(i))
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 64)
	for i := range n {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if got := binary.BigEndian.Uint32(buf); got != uint32(i) {
			t.Fatalf("datagram %d arrived as number %d: reordered", i, got)
		}
	}
}

func TestTCPStreamIntactUnderJitter(t *testing.T) {
	echo := newEchoServer(t)
	l := startLink(t, LinkConfig{Backends: []string{echo.addr()}, Delay: 3 * time.Millisecond,
		Jitter: 3 * time.Millisecond, TCPChunk: 512})
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	go func() {
		_, _ = c.Write(data)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echoed stream differs: %d bytes back, want %d", len(got), len(data))
	}
}

func TestPartitionBlackholeAndHeal(t *testing.T) {
	echo := newEchoServer(t)
	l := startLink(t, LinkConfig{Backends: []string{echo.addr()}, Delay: time.Millisecond})
	addr := l.Addr().String()

	established, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer established.Close()
	roundTrip(t, established, "before")
	udp, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	if err := udpRoundTrip(udp, 2*time.Second); err != nil {
		t.Fatalf("UDP before partition: %v", err)
	}

	l.Partition()
	// Established TCP stalls, a new TCP connection carries nothing, UDP is dropped.
	if _, err := established.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	if err := readWithin(established, 4, 200*time.Millisecond); err == nil {
		t.Error("established TCP connection carried data while partitioned")
	}
	fresh, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if _, err := fresh.Write([]byte("new!")); err != nil {
		t.Fatal(err)
	}
	if err := readWithin(fresh, 4, 200*time.Millisecond); err == nil {
		t.Error("new TCP connection carried data while partitioned")
	}
	if err := udpRoundTrip(udp, 200*time.Millisecond); err == nil {
		t.Error("UDP datagram crossed a partitioned link")
	}
	if st := l.Stats(); st.UDPDroppedPartition == 0 || !st.Partitioned {
		t.Errorf("stats after partition: %+v", st)
	}

	healedAt := time.Now()
	l.Heal()
	// What was held is delivered; everything works again.
	if err := readWithin(established, 4, 2*time.Second); err != nil {
		t.Errorf("held data not delivered after heal: %v", err)
	}
	if err := readWithin(fresh, 4, 2*time.Second); err != nil {
		t.Errorf("connection opened during the partition did not work after heal: %v", err)
	}
	if err := udpRoundTrip(udp, 2*time.Second); err != nil {
		t.Errorf("UDP after heal: %v", err)
	}
	roundTrip(t, established, "after")
	t.Logf("blackhole partition: traffic restored %s after Heal", time.Since(healedAt).Round(time.Microsecond))
}

func TestPartitionRefuse(t *testing.T) {
	echo := newEchoServer(t)
	l := startLink(t, LinkConfig{Backends: []string{echo.addr()}, PartitionMode: Refuse})
	addr := l.Addr().String()
	established, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer established.Close()
	roundTrip(t, established, "before")

	l.Partition()
	if err := readWithin(established, 1, 2*time.Second); err == nil || errors.Is(err, errTimeout) {
		t.Errorf("established connection after Refuse partition: read err %v, want a reset", err)
	}
	start := time.Now()
	fresh, err := net.Dial("tcp", addr)
	if err == nil {
		_, _ = fresh.Write([]byte("x"))
		err = readWithin(fresh, 1, 2*time.Second)
		fresh.Close()
	}
	if err == nil || errors.Is(err, errTimeout) {
		t.Errorf("new connection during Refuse partition: %v, want a reset", err)
	}
	t.Logf("refuse partition: new connection failed after %s: %v", time.Since(start).Round(time.Microsecond), err)

	l.Heal()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "after heal")
}

func TestTCPNextBackendWhenOneRefuses(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	echo := newEchoServer(t)
	l := startLink(t, LinkConfig{Backends: []string{deadAddr, echo.addr()}})
	for i := range 4 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, "connection "+string(rune('0'+i)))
		c.Close()
	}
	if st := l.Stats(); st.TCPDialFailures == 0 {
		t.Errorf("no dial failure counted: %+v", st)
	}
}

func TestUDPFlowIdleExpiry(t *testing.T) {
	echo := newEchoServer(t)
	l := startLink(t, LinkConfig{Backends: []string{echo.addr()}, UDPIdleTimeout: 100 * time.Millisecond})
	c, err := net.Dial("udp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := udpRoundTrip(c, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := l.Stats().UDPFlows; got != 1 {
		t.Fatalf("flows = %d, want 1", got)
	}
	wait.For(t, 2*time.Second, "idle flow expiry", func() bool { return l.Stats().UDPFlows == 0 })
	if err := udpRoundTrip(c, 2*time.Second); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestControlAPI(t *testing.T) {
	echo := newEchoServer(t)
	l := startLink(t, LinkConfig{Backends: []string{echo.addr()}})
	srv := httptest.NewServer(l.ControlHandler())
	defer srv.Close()
	ctl := Control{URL: srv.URL}
	ctx := context.Background()
	if err := ctl.Partition(ctx); err != nil {
		t.Fatal(err)
	}
	if !l.Partitioned() {
		t.Error("not partitioned after Control.Partition")
	}
	if err := ctl.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	want := Shape{Delay: 7 * time.Millisecond, Jitter: time.Millisecond, Loss: 0.25}
	if err := ctl.SetShape(ctx, Reverse, want); err != nil {
		t.Fatal(err)
	}
	if got := l.Shape(Reverse); got != want {
		t.Errorf("reverse shape = %v, want %v", got, want)
	}
	if got := l.Shape(Forward); got != (Shape{}) {
		t.Errorf("forward shape changed to %v", got)
	}
	if err := ctl.SetShape(ctx, Both, Shape{Loss: 3}); err == nil {
		t.Error("loss 3 accepted")
	}
	st, err := ctl.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Partitions != 1 || st.Partitioned {
		t.Errorf("stats = %+v", st)
	}
}

func TestRunReturnsWithoutLeaks(t *testing.T) {
	echo := newEchoServer(t)
	before := runtime.NumGoroutine()
	l, err := NewLink(LinkConfig{Listen: "127.0.0.1:0", Backends: []string{echo.addr()}, Delay: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	// Leave traffic in flight: open TCP connections, a partitioned-then-held
	// chunk and UDP flows.
	var conns []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, "warm")
		conns = append(conns, c)
		u, err := net.Dial("udp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if err := udpRoundTrip(u, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, u)
	}
	l.Partition()
	_, _ = conns[0].Write([]byte("held"))
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	for _, c := range conns {
		c.Close()
	}
	wait.For(t, 5*time.Second, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
	if err := l.Run(context.Background()); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("second Run = %v, want ErrAlreadyRunning", err)
	}
}

var errTimeout = errors.New("timeout")

func roundTrip(t *testing.T, c net.Conn, what string) {
	t.Helper()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatalf("%s: write: %v", what, err)
	}
	if err := readWithin(c, 4, 5*time.Second); err != nil {
		t.Fatalf("%s: read: %v", what, err)
	}
}

func readWithin(c net.Conn, n int, d time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	_, err := io.ReadFull(c, make([]byte, n))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errTimeout
	}
	return err
}

func udpRoundTrip(c net.Conn, d time.Duration) error {
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	return readWithin(c, 4, d)
}

// A new connection's first request pays the emulated handshake round trip
// plus its own round trip.
func TestTCPNewConnectionTimeToFirstByte(t *testing.T) {
	echo := newEchoServer(t)
	for _, skip := range []bool{false, true} {
		l := startLink(t, LinkConfig{Backends: []string{echo.addr()}, Delay: oneWay, NoHandshakeDelay: skip})
		var samples []time.Duration
		for range 10 {
			start := time.Now()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, c, "first byte")
			samples = append(samples, time.Since(start))
			c.Close()
		}
		want := 4 * oneWay
		if skip {
			want = 2 * oneWay
		}
		got := slices.Min(samples)
		t.Logf("TCP new connection, one-way %s, NoHandshakeDelay=%v: connect+first round trip min %s p50 %s (want %s)",
			oneWay, skip, got, median(samples), want)
		if got < want || got > want+3*time.Millisecond {
			t.Errorf("NoHandshakeDelay=%v: time to first byte %s, want %s..+3ms", skip, got, want)
		}
	}
}
