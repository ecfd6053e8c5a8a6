package gateway

import (
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkRelayOneStream measures the throughput of one proxied
// connection: client → egress → one QUIC stream → ingress → endpoint.
func BenchmarkRelayOneStream(b *testing.B) {
	w := newWorld(b, "a", "b")
	w.export("b", "sink", 9000, "spiffe://a.test")
	total := make(chan int64, 1)
	w.endpoint("b", "sink", "e1", serve(b, func(c *net.TCPConn) {
		_, _ = c.Write([]byte{1}) // answer the ClientHello
		n, _ := io.Copy(io.Discard, c)
		total <- n
		_ = c.CloseWrite()
	}))
	a := w.start(w.config("a", "a1", ""))
	w.start(w.config("b", "b1", ""))
	hello := clientHello(b, "9000.sink.default.any.strait")
	c, err := net.DialTCP("tcp", nil, a.EgressAddr().(*net.TCPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(hello); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	_ = c.CloseWrite()
	got := <-total
	b.StopTimer()
	if want := int64(b.N)*int64(len(chunk)) + int64(len(hello)); got != want {
		b.Fatalf("sink got %d bytes, want %d", got, want)
	}
	b.ReportMetric(float64(got)/time.Since(start).Seconds()/1e6, "MB/s_delivered")
}
