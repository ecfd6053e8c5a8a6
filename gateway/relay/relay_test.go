package relay

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		c, _ := ln.AcceptTCP()
		accepted <- c
	}()
	c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// counter is a Counter for tests.
type counter struct{ n float64 }

func (c *counter) Add(v float64) { c.n += v }

// pipeTCP relays between two TCP connections: client ⇄ [a relay b] ⇄ server.
func pipeTCP(t *testing.T, r *Relay) (client, server *net.TCPConn, done chan Result) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	done = make(chan Result, 1)
	go func() { done <- r.Pipe(TCP(a), TCP(b), Counters{}) }()
	return client, server, done
}

func TestHalfClose(t *testing.T) {
	client, server, done := pipeTCP(t, New(Config{}))
	payload := bytes.Repeat([]byte("x"), 1<<20)
	go func() {
		_, _ = client.Write(payload)
		_ = client.CloseWrite()
	}()
	got, err := io.ReadAll(server)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("server read %d bytes, %v", len(got), err)
	}
	// The other direction is still open after the client's FIN.
	if _, err := server.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	_ = server.CloseWrite()
	reply, err := io.ReadAll(client)
	if err != nil || string(reply) != "reply" {
		t.Fatalf("client read %q, %v", reply, err)
	}
	res := <-done
	if res.Err != nil || res.AToB != 1<<20 || res.BToA != 5 {
		t.Fatalf("result %+v", res)
	}
}

func TestResetPropagates(t *testing.T) {
	client, server, done := pipeTCP(t, New(Config{}))
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(server, buf); err != nil {
		t.Fatal(err)
	}
	_ = server.SetLinger(0)
	_ = server.Close() // RST
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := client.Read(buf)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read: %v, want ECONNRESET", err)
	}
	if res := <-done; res.Err == nil {
		t.Fatal("relay reported no error after a reset")
	}
}

func TestCopyCountsAndPools(t *testing.T) {
	r := New(Config{BufferSize: 1024})
	var c counter
	src := bytes.NewReader(bytes.Repeat([]byte("y"), 10_000))
	var dst bytes.Buffer
	n, err := copyBuffer(&dst, src, make([]byte, 1024), &c, nil)
	if err != nil || n != 10_000 || c.n != 10_000 || dst.Len() != 10_000 {
		t.Fatalf("n=%d err=%v counted=%v", n, err, c.n)
	}
	if got := len(*r.pool.Get().(*[]byte)); got != 1024 {
		t.Fatalf("pooled buffer of %d bytes", got)
	}
}

func TestCopyBufferDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 32<<10)
	src := &repeatReader{n: 1 << 20}
	allocs := testing.AllocsPerRun(10, func() {
		src.n = 1 << 20
		_, _ = copyBuffer(io.Discard, src, buf, nil, nil)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per copy", allocs)
	}
}

type repeatReader struct{ n int }

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

// TestCopyTimes checks that a direction's first and last write times are
// recorded when asked for, in order, and left zero otherwise.
func TestCopyTimes(t *testing.T) {
	for _, on := range []bool{true, false} {
		var first, last time.Time
		before := time.Now()
		src := bytes.NewReader(bytes.Repeat([]byte("z"), 3000))
		if _, err := copyBuffer(io.Discard, src, make([]byte, 1024), nil, timesOf(on, &first, &last)); err != nil {
			t.Fatal(err)
		}
		switch {
		case on && (first.Before(before) || last.Before(first)):
			t.Errorf("times on: first %v, last %v, copy began %v", first, last, before)
		case !on && (!first.IsZero() || !last.IsZero()):
			t.Errorf("times off: first %v, last %v, want zero", first, last)
		}
	}
}
