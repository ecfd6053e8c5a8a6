package proxy

import (
	"io"
	"net"
	"testing"
)

// BenchmarkRelay measures relay alone over loopback TCP: a writer streams
// through the relay into a reader that discards.
func BenchmarkRelay(b *testing.B) {
	p := &Proxy{}
	p.bufs.New = func() any { buf := make([]byte, relayBufSize); return &buf }
	front, back := tcpPair(b), tcpPair(b)
	go p.relay(front[1], back[0])
	done := make(chan int64)
	go func() {
		n, _ := io.Copy(io.Discard, back[1])
		done <- n
	}()
	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := front[0].Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	_ = front[0].(*net.TCPConn).CloseWrite()
	if n := <-done; n != int64(b.N)*int64(len(chunk)) {
		b.Fatalf("relayed %d bytes, want %d", n, int64(b.N)*int64(len(chunk)))
	}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(b *testing.B) [2]net.Conn {
	ln := listen(b)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	s := <-accepted
	b.Cleanup(func() { c.Close(); s.Close() })
	return [2]net.Conn{c, s}
}

// BenchmarkEndToEnd streams through both proxies (inner mTLS, PROXY header,
// echo app) and back: app → outbound → inbound → echo → inbound → outbound
// → app. Bytes per op count one direction.
func BenchmarkEndToEnd(b *testing.B) {
	w := newWorld(b)
	w.reg.setBase(gateway(west, "gw1", ""))
	w.serverProxy(west, "echo-1")
	client := w.clientProxy(west, "client", "")
	c, err := net.Dial("tcp", client.UpstreamAddr(0).String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	done := make(chan int64)
	go func() {
		n, _ := io.Copy(io.Discard, c)
		done <- n
	}()
	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if n := <-done; n != int64(b.N)*int64(len(chunk)) {
		b.Fatalf("echoed %d bytes, want %d", n, int64(b.N)*int64(len(chunk)))
	}
}

// BenchmarkConnect measures a new connection through both proxies: TCP
// connects, the inner mTLS handshake, the PROXY header and one echoed byte.
func BenchmarkConnect(b *testing.B) {
	w := newWorld(b)
	w.reg.setBase(gateway(west, "gw1", ""))
	w.serverProxy(west, "echo-1")
	client := w.clientProxy(west, "client", "")
	b.ReportAllocs()
	for b.Loop() {
		if got, err := roundTrip(b, client, []byte("x")); err != nil || string(got) != "x" {
			b.Fatalf("round trip = %q, %v", got, err)
		}
	}
}
