package gateway

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// TestRestartedPeerServesPromptly: a remote gateway is killed (its socket
// goes away without a CONNECTION_CLOSE) while streams are relayed through
// it, and restarts on the same address at the default timeouts (dial 3 s,
// header 5 s, keepalive 5 s, idle 30 s), as in failover scenario 9. The
// streams stuck on the dead connection keep it open on the caller's side;
// new streams must go to the restarted gateway at once, none failing and
// none waiting for a timer of the dead connection (each bound is below
// the smallest default timeout). With a shared stateless reset key the
// dead connection is reset at its first packet; without one, the restarted
// gateway's new record (a new started_at) alone must move new streams to a
// new connection.
func TestRestartedPeerServesPromptly(t *testing.T) {
	for _, tt := range []struct {
		name     string
		resetKey *quic.StatelessResetKey
	}{
		{"shared stateless reset key", &quic.StatelessResetKey{4, 5, 6}},
		{"no stateless reset key", nil},
	} {
		t.Run(tt.name, func(t *testing.T) { testRestartedPeer(t, tt.resetKey) })
	}
}

func testRestartedPeer(t *testing.T, resetKey *quic.StatelessResetKey) {
	w := newWorld(t, "a", "b")
	w.export("b", "echo", 9000, "spiffe://a.test")
	w.endpoint("b", "echo", "e1", echoServer(t))
	a := w.start(w.config("a", "a1", ""))
	cfg := w.config("b", "b1", "")
	cfg.StatelessResetKey = resetKey
	crashing := cfg
	crashing.Registry = keepRecords{w.reg}
	b1 := w.start(crashing)
	hello := clientHello(t, "9000.echo.default.any.strait")
	var stuck []*net.TCPConn
	for i := range 3 { // relayed and unanswered when b1 dies
		c := mustOpen(t, a, hello)
		t.Cleanup(func() { _ = c.SetLinger(0); _ = c.Close() }) // a reset ends the relay at once
		if _, err := c.Write(payloadFor(100 + i)[:10]); err != nil {
			t.Fatal(err)
		}
		stuck = append(stuck, c)
	}

	// Crash: the socket goes first, so that nothing (no CONNECTION_CLOSE)
	// leaves b1 afterwards; its record stays (a killed gateway's record
	// lives until its lease expires: b1's registry ignores the withdrawal).
	_ = b1.udp.Close()
	_ = b1.transport.Close()
	b1.cancel()
	<-b1.done
	b1.err = nil // Run reports the closed transport; that is the crash

	restarted := cfg
	restarted.IngressListenAddr = b1.IngressAddr().String()
	w.start(restarted)

	// A stream that waits on any timer of the dead connection takes at
	// least the smallest default timeout (dial, 3 s); the bound stays half
	// a second under it. It was 1 s, which a fresh-clone run under -race at
	// a load average of 19 exceeded (1.4 s) with nothing waiting on a timer.
	const n, bound = 40, DefaultDialTimeout - 500*time.Millisecond
	var wg sync.WaitGroup
	errs := make([]error, n)
	took := make([]time.Duration, n)
	for i := range n {
		wg.Go(func() {
			start := time.Now()
			errs[i] = finishStreamCtx(a, hello, payloadFor(i))
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	var slowest time.Duration
	for i := range n {
		if errs[i] != nil {
			t.Errorf("stream %d after the restart: %v", i, errs[i])
		}
		slowest = max(slowest, took[i])
	}
	if slowest > bound {
		t.Errorf("slowest of %d streams after the restart took %v, want ≤ %v", n, slowest, bound)
	}
	t.Logf("%d streams after the restart, slowest %v", n, slowest)
	if resetKey == nil {
		return // the dead connection lives until its idle timeout
	}

	// The streams stuck on the dead connection end as soon as one of them
	// sends (a full-size packet draws the restarted gateway's stateless
	// reset), instead of at the idle timeout.
	for i, c := range stuck {
		start := time.Now()
		_ = c.SetDeadline(start.Add(10 * time.Second))
		_, err := c.Write(payloadFor(200 + i)[:1200])
		if err == nil { // else the reset came already (another stream sent)
			_, err = io.ReadAll(c)
		}
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("stuck stream %d ended with %v, want a reset", i, err)
		}
		if d := time.Since(start); d > bound {
			t.Errorf("stuck stream %d reset %v after it sent, want ≤ %v", i, d, bound)
		}
	}
}

// keepRecords is a registry whose records are never withdrawn, as a
// SIGKILLed gateway's record stays until its lease expires.
type keepRecords struct{ *registry }

func (keepRecords) Delete(string) {}
