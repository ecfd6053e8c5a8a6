package gateway

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestResetEndToEnd: a TCP reset on either side crosses the tunnel as a
// stream reset and reaches the other side as a TCP reset.
func TestResetEndToEnd(t *testing.T) {
	tests := []struct {
		name string
		// endpointResets: the endpoint resets; otherwise the client does.
		endpointResets bool
	}{
		{"endpoint resets", true},
		{"client resets", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, "a", "b")
			w.export("b", "rst", 9000, "spiffe://a.test")
			seen := make(chan error, 1)
			hello := clientHello(t, "9000.rst.default.any.strait")
			w.endpoint("b", "rst", "e1", serve(t, func(c *net.TCPConn) {
				if _, err := io.ReadFull(c, make([]byte, len(hello))); err != nil {
					return
				}
				_, _ = c.Write([]byte("hi"))
				if tt.endpointResets {
					_ = c.SetLinger(0)
					return // the deferred Close resets
				}
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err := io.Copy(io.Discard, c)
				seen <- err
			}))
			a := w.start(w.config("a", "a1", ""))
			w.start(w.config("b", "b1", ""))
			c, err := net.DialTCP("tcp", nil, a.EgressAddr().(*net.TCPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(hello); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2)
			if _, err := io.ReadFull(c, buf); err != nil {
				t.Fatal(err)
			}
			if tt.endpointResets {
				_, err := io.ReadAll(c)
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("client got %v, want ECONNRESET", err)
				}
				return
			}
			_ = c.SetLinger(0)
			_ = c.Close()
			if err := <-seen; !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("endpoint got %v, want ECONNRESET", err)
			}
		})
	}
}
