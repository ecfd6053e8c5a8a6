package devcluster

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"
)

// BenchmarkTransfer1MiB measures a 1 MiB echo round trip through the full
// cross-cluster path (east proxy, east gateway, QUIC, west gateway, west
// proxy, echo app) next to a direct loopback TCP echo. MB/s counts the
// bytes sent one way.
func BenchmarkTransfer1MiB(b *testing.B) {
	data := make([]byte, 1<<20)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	b.Run("path=strait", func(b *testing.B) {
		f := startFederation(b, testConfig(b))
		benchRoundTrips(b, f.UpstreamAddr("east", "echo"), data)
	})
	b.Run("path=direct", func(b *testing.B) {
		benchRoundTrips(b, startTCPEcho(b), data)
	})
}

func benchRoundTrips(b *testing.B, addr string, data []byte) {
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		got, err := roundTrip(addr, data)
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			b.Fatalf("echo returned %d differing bytes", len(got))
		}
	}
}

// startTCPEcho serves a plain TCP echo on loopback until the benchmark ends.
func startTCPEcho(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}
