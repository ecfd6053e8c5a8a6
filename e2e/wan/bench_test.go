package wan

import (
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkTCPThroughput moves bytes one way through a link without delay:
// the emulator's own ceiling (compare with BenchmarkTCPDirect).
func BenchmarkTCPThroughput(b *testing.B) {
	benchThroughput(b, true)
}

// BenchmarkTCPDirect moves bytes one way over loopback without a link.
func BenchmarkTCPDirect(b *testing.B) {
	benchThroughput(b, false)
}

func benchThroughput(b *testing.B, viaLink bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	addr := ln.Addr().String()
	if viaLink {
		l := startLink(b, LinkConfig{Backends: []string{addr}, DisableUDP: true})
		addr = l.Addr().String()
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 256*1024)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	<-got
	c.Close()
}

// BenchmarkUDPEcho keeps 64 datagrams of 1200 bytes in flight through a link
// without delay to a UDP echo server; each op is one datagram there and back.
func BenchmarkUDPEcho(b *testing.B) { benchUDPEcho(b, true) }

// BenchmarkUDPEchoDirect is BenchmarkUDPEcho without the link.
func BenchmarkUDPEchoDirect(b *testing.B) { benchUDPEcho(b, false) }

func benchUDPEcho(b *testing.B, viaLink bool) {
	echo := newEchoServer(b)
	addr := echo.addr()
	if viaLink {
		addr = startLink(b, LinkConfig{Backends: []string{echo.addr()}, DisableTCP: true}).Addr().String()
	}
	c, err := net.Dial("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 1200)
	buf := make([]byte, 2048)
	const window = 64
	b.SetBytes(int64(2 * len(msg)))
	b.ResetTimer()
	sent, got := 0, 0
	for ; sent < min(window, b.N); sent++ {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	lost := 0
	for got+lost < b.N {
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Read(buf); err != nil {
			lost += sent - got - lost // the window drained: count what is missing as lost
		} else {
			got++
		}
		for ; sent < b.N && sent-got-lost < window; sent++ {
			if _, err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(lost)/float64(b.N), "lost/op")
}
