package wan

import (
	"io"
	"net"
	"testing"
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
