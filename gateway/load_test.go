package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/strait-mesh/strait/gateway/tunnel"
)

// openStream dials the egress, sends hello and waits for its echo: the
// stream is then established end to end.
func openStream(egress net.Addr, hello []byte) (*net.TCPConn, error) {
	c, err := net.DialTCP("tcp", nil, egress.(*net.TCPAddr))
	if err != nil {
		return nil, err
	}
	start := time.Now()
	_ = c.SetDeadline(start.Add(60 * time.Second))
	if _, err := c.Write(hello); err != nil {
		c.Close()
		return nil, err
	}
	got := make([]byte, len(hello))
	if n, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, hello) {
		c.Close()
		if code, ok := tunnel.ParseRefusal(got[:n]); ok {
			return nil, fmt.Errorf("hello echo: refused with %v after %v", code, time.Since(start))
		}
		return nil, fmt.Errorf("hello echo: %v", err)
	}
	return c, nil
}

// finishStream sends payload, half-closes and checks the echo.
func finishStream(c *net.TCPConn, payload []byte) error {
	defer c.Close()
	if _, err := c.Write(payload); err != nil {
		return err
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("echo mismatch: got %d bytes, want %d", len(got), len(payload))
	}
	return nil
}

func payloadFor(i int) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 7))
	b := make([]byte, 1024+r.IntN(8192))
	for j := range b {
		b[j] = byte(r.Uint32())
	}
	return b
}

// openMany establishes n streams at once.
func openMany(t *testing.T, egress net.Addr, hello []byte, n int) []*net.TCPConn {
	conns := make([]*net.TCPConn, n)
	var grp errgroup.Group
	for i := range conns {
		grp.Go(func() error {
			c, err := openStream(egress, hello)
			conns[i] = c
			return err
		})
	}
	if err := grp.Wait(); err != nil {
		t.Fatal(err)
	}
	return conns
}

// finishMany completes streams opened by openMany, each with its own
// payload, and fails the test on any mismatch.
func finishMany(t *testing.T, conns []*net.TCPConn, offset int) {
	var grp errgroup.Group
	for i, c := range conns {
		grp.Go(func() error { return finishStream(c, payloadFor(offset+i)) })
	}
	if err := grp.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestThousandConcurrentStreams(t *testing.T) {
	const n = 1000
	_, a, b := twoClusters(t)
	hello := clientHello(t, "9000.echo.default.any.strait")
	conns := openMany(t, a.EgressAddr(), hello, n)
	if got := b.ActiveStreams(); got != n {
		t.Fatalf("ingress has %d active streams, want %d", got, n)
	}
	b.connsMu.Lock()
	quicConns := len(b.conns)
	b.connsMu.Unlock()
	// The streams share the pool's connections (the burst may come
	// before the pool has dialed them all).
	if quicConns < 1 || quicConns > a.cfg.ConnsPerRemoteGateway {
		t.Fatalf("ingress has %d QUIC connections, want 1 to %d", quicConns, a.cfg.ConnsPerRemoteGateway)
	}
	finishMany(t, conns, 0)
}

// hashServer greets (as a TLS server answers a ClientHello), reads until
// EOF, then writes the SHA-256 and length of what it read.
func hashServer(t testing.TB) string {
	return serve(t, func(c *net.TCPConn) {
		if _, err := c.Write([]byte("hello\n")); err != nil {
			return
		}
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err != nil {
			return
		}
		fmt.Fprintf(c, "%s %d\n", hex.EncodeToString(h.Sum(nil)), n)
		_ = c.CloseWrite()
	})
}

// upload sends hello then size pseudo-random bytes, half-closes and checks
// the hash server's answer.
func upload(t *testing.T, egress net.Addr, hello []byte, size int64) time.Duration {
	c, err := net.DialTCP("tcp", nil, egress.(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	h := sha256.New()
	h.Write(hello)
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	greeting := make([]byte, 6)
	if _, err := io.ReadFull(c, greeting); err != nil {
		t.Fatal(err)
	}
	src := io.LimitReader(rand.NewChaCha8([32]byte{1}), size)
	if _, err := io.Copy(io.MultiWriter(c, h), src); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s %d\n", hex.EncodeToString(h.Sum(nil)), size+int64(len(hello)))
	if string(reply) != want {
		t.Fatalf("got %q, want %q", reply, want)
	}
	return time.Since(start)
}

func hashClusters(t *testing.T) (*running, []byte) {
	w := newWorld(t, "a", "b")
	w.export("b", "hash", 9000, "spiffe://a.test")
	w.endpoint("b", "hash", "e1", hashServer(t))
	a := w.start(w.config("a", "a1", ""))
	w.start(w.config("b", "b1", ""))
	return a, clientHello(t, "9000.hash.default.any.strait")
}

func TestHalfClose(t *testing.T) {
	a, hello := hashClusters(t)
	upload(t, a.EgressAddr(), hello, 1<<20)
}

func TestOneGiBTransfer(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("1 GiB transfer: skipped with -short and under -race")
	}
	a, hello := hashClusters(t)
	const size = 1 << 30
	d := upload(t, a.EgressAddr(), hello, size)
	t.Logf("1 GiB through egress and ingress in %v: %.0f MB/s, SHA-256 matched", d.Round(time.Millisecond), float64(size)/d.Seconds()/1e6)
}
