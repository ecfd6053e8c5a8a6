package gateway

import (
	"context"
	"errors"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// TestStatelessResetAfterCrash: a gateway that dies without closing its
// connections and restarts on the same address with the same stateless
// reset key makes its peers drop their dead connections at once (RELIABILITY
// T11) instead of waiting for the idle timeout.
func TestStatelessResetAfterCrash(t *testing.T) {
	w := newWorld(t, "a", "b")
	w.export("b", "echo", 9000, "spiffe://a.test")
	w.endpoint("b", "echo", "e1", echoServer(t))
	a := w.start(w.config("a", "a1", ""))
	key := &quic.StatelessResetKey{1, 2, 3}
	cfg := w.config("b", "b1", "")
	cfg.StatelessResetKey = key
	b1 := w.start(cfg)
	hello := clientHello(t, "9000.echo.default.any.strait")
	c := mustOpen(t, a, hello)
	defer c.Close()
	// Every pooled connection is up before the crash (none is still
	// being dialed, which a crash of this kind would leave half-done).
	waitShards(t, a, cfg.ConnsPerRemoteGateway)

	a.pool.mu.Lock()
	pr := a.pool.peers["b/b1"]
	a.pool.mu.Unlock()
	if pr == nil {
		t.Fatal("no pooled peer b/b1")
	}
	// The pooled connection that carries c's stream.
	var old *pconn
	pr.mu.Lock()
	for _, s := range pr.shards {
		if s.conn != nil && s.conn.streams.Load() > 0 {
			old = s.conn
		}
	}
	pr.mu.Unlock()
	if old == nil {
		t.Fatal("no pooled connection carries the open stream")
	}

	// Crash: the socket goes away without a CONNECTION_CLOSE. The socket
	// first: quic-go's Transport.Close does not always destroy every
	// connection (with two, one sometimes survived it and sent its
	// CONNECTION_CLOSE when the stopped gateway closed it).
	_ = b1.udp.Close()
	_ = b1.transport.Close()
	b1.cancel()
	<-b1.done
	b1.err = nil // Run reports the closed transport; that is the crash

	restarted := cfg
	restarted.IngressListenAddr = b1.IngressAddr().String()
	w.start(restarted)

	// A full-size packet: quic-go answers with a stateless reset only a
	// packet longer than the smallest reset (MinStatelessResetSize, 42
	// bytes). 15 bytes of data make a packet near that size (short
	// header, STREAM frame, 16-byte tag; not measured); a unit-test run in
	// parallel with other packages once waited for the 30 s idle timeout.
	start := time.Now()
	if _, err := c.Write(payloadFor(300)[:1200]); err != nil {
		t.Fatal(err)
	}
	_, err := io.ReadAll(c)
	took := time.Since(start)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("stream on the dead connection ended with %v, want a reset", err)
	}
	if took > time.Second {
		t.Fatalf("dead connection detected after %v, want ≤ 1s", took)
	}
	// The stream can see its reset a moment before the connection's
	// context is cancelled: wait for the connection itself.
	select {
	case <-old.Context().Done():
	case <-time.After(time.Second):
		t.Fatal("old connection still open 1s after its stream was reset")
	}
	var sr *quic.StatelessResetError
	if cause := context.Cause(old.Context()); !errors.As(cause, &sr) {
		t.Fatalf("old connection closed by %v, want a stateless reset", cause)
	}
	t.Logf("dead connection reset by a stateless reset %v after the first packet", took)
	// New streams reach the restarted gateway.
	if err := finishStream(mustOpen(t, a, hello), payloadFor(1)); err != nil {
		t.Fatal(err)
	}
}
