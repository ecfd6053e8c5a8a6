package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// TestInboundHandshakeTimeoutResets: a caller whose side of the TLS 1.3
// handshake completed while the destination proxy's did not (the
// destination was not scheduled in time, or the caller's last flight was
// lost) reads a reset when the destination's handshake timeout fires,
// not an end of stream: before, the handshake's context closed the
// connection with a FIN, and a caller relaying its application's bytes
// passed on a clean, empty close (in a 1,000-cluster run, 26 of 209
// failed connections reached their clients as EOF this way).
func TestInboundHandshakeTimeoutResets(t *testing.T) {
	w := newWorld(t)
	w.reg.setBase(gateway(west, "gw1", ""), export(west))
	server, app := w.serverProxy(west, "echo-1", func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })

	cfg := tlsconfig.MTLSClientConfig(w.svid(west, "client"), w.bundles, tlsconfig.AuthorizeAny())
	cfg.ServerName = "9000.echo.default.west.strait"
	raw, err := net.Dial("tcp", server.InboundAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	// The ClientHello reaches the destination; the caller's last flight
	// (certificate, Finished) and everything after it do not.
	c := tls.Client(&firstWriteOnly{Conn: raw}, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatalf("the caller's side of the handshake: %v", err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatalf("write: %v", err)
	}
	start := time.Now()
	_, err = c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after the destination's handshake timed out: %v after %s, want a reset", err, time.Since(start).Round(time.Millisecond))
	}
	eventually(t, 5*time.Second, "refusal counted as timeout", func() bool {
		return testutil.ToFloat64(server.metrics.inboundRefusals.WithLabelValues(refusedTimeout)) == 1
	})
	if n := len(app.SPIFFEIDs()); n != 0 {
		t.Errorf("the app served %d connections", n)
	}
}

// firstWriteOnly sends its first write and drops the others, as a path
// that died after the ClientHello would (the writer does not know).
type firstWriteOnly struct {
	net.Conn
	writes atomic.Int32
}

func (c *firstWriteOnly) Write(b []byte) (int, error) {
	if c.writes.Add(1) == 1 {
		return c.Conn.Write(b)
	}
	return len(b), nil
}
