package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// firstWriteOnly passes the first datagram written through it and drops
// every later one: a QUIC client on it sends its Initial and then goes
// silent, whatever the server answers. It counts the datagrams received.
type firstWriteOnly struct {
	net.PacketConn
	wrote    atomic.Bool
	sent     chan struct{} // closed once the first datagram is out
	received *atomic.Int64
}

func (c *firstWriteOnly) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.wrote.CompareAndSwap(false, true) {
		n, err := c.PacketConn.WriteTo(b, addr)
		close(c.sent)
		return n, err
	}
	return len(b), nil
}

func (c *firstWriteOnly) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(b)
	if err == nil {
		c.received.Add(1)
	}
	return n, addr, err
}

// silentAttacker opens QUIC handshakes to a gateway that never go past the
// client's Initial, from a few loopback source addresses other than
// 127.0.0.1 (each keeps one UDP socket open, so nothing answers the
// server's packets, not even ICMP).
type silentAttacker struct {
	to       net.Addr
	tc       *tls.Config
	socks    []net.PacketConn
	attempts atomic.Int64
	received atomic.Int64 // datagrams the gateway sent back
}

func newSilentAttacker(t testing.TB, to net.Addr, sources int) *silentAttacker {
	t.Helper()
	a := &silentAttacker{to: to, tc: &tls.Config{
		InsecureSkipVerify: true, NextProtos: []string{tunnel.ALPN}, MinVersion: tls.VersionTLS13,
		// One key share: the ClientHello fits in the first datagram.
		CurvePreferences: []tls.CurveID{tls.X25519},
	}}
	for i := range sources {
		src := netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + i)})
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		a.socks = append(a.socks, c)
	}
	return a
}

// attempt sends one silent handshake from socket i.
func (a *silentAttacker) attempt(i int) error {
	conn := &firstWriteOnly{PacketConn: a.socks[i], sent: make(chan struct{}), received: &a.received}
	tr := &quic.Transport{Conn: conn}
	ctx, cancel := context.WithCancel(context.Background())
	dialed := make(chan struct{})
	go func() {
		defer close(dialed)
		_, _ = tr.Dial(ctx, a.to, a.tc, &quic.Config{HandshakeIdleTimeout: time.Minute})
	}()
	defer func() {
		cancel()
		<-dialed
		_ = tr.Close() // leaves the socket open
	}()
	select {
	case <-conn.sent:
		a.attempts.Add(1)
		return nil
	case <-dialed:
		return errors.New("silent attempt: the dial ended before its Initial was sent")
	case <-time.After(10 * time.Second):
		return errors.New("silent attempt: no Initial sent in 10s")
	}
}

// run sends rate attempts per second, spread over the sockets, until ctx
// ends.
func (a *silentAttacker) run(ctx context.Context, rate int) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(a.socks))
	for i := range a.socks {
		wg.Go(func() {
			tick := time.NewTicker(time.Second * time.Duration(len(a.socks)) / time.Duration(rate))
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if err := a.attempt(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// dialGateway opens a tunnel connection to b as cluster's gateway from
// 127.0.0.1, as a remote gateway's pool does, with its dial timeout.
func (w *world) dialGateway(ctx context.Context, cluster string, to *running) (*quic.Conn, error) {
	ca := w.cas[cluster]
	id, _ := trust.GatewayID(ca.TrustDomain(), cluster)
	if w.reg.src.Snapshot().TrustDomain(cluster) == "" {
		// The ingress admits gateways of clusters the federation knows.
		w.reg.Put("dialer/"+cluster, &straitv1.Gateway{
			Cluster: cluster, Id: "dialer", TrustDomain: ca.TrustDomain().Name(), SpiffeId: id.String(),
			Address: "127.0.0.1:1",
		})
	}
	svid, err := ca.IssueX509SVID(id, 0)
	if err != nil {
		return nil, err
	}
	tc := tlsconfig.MTLSClientConfig(svid, w.bundles, tlsconfig.AuthorizeAny())
	tc.NextProtos = []string{tunnel.ALPN}
	tc.MinVersion = tls.VersionTLS13
	ctx, cancel := context.WithTimeout(ctx, DefaultDialTimeout)
	defer cancel()
	return quic.DialAddr(ctx, to.IngressAddr().String(), tc, &quic.Config{MaxIdleTimeout: 10 * time.Second, KeepAlivePeriod: time.Second})
}

// echoOver runs one round trip to default/echo port 9000 on conn.
func echoOver(conn *quic.Conn, payload string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	defer st.CancelRead(0)
	hdr, err := tunnel.AppendHeader(nil, &straitv1.StreamHeader{Service: "echo", Namespace: "default", Port: 9000, SourceCluster: "a"})
	if err != nil {
		return err
	}
	if _, err := st.Write(append(hdr, payload...)); err != nil {
		return err
	}
	_ = st.Close()
	rep, err := tunnel.ReadReply(st, 5*time.Second)
	if err != nil {
		return err
	}
	if rep.GetCode() != straitv1.StreamCode_STREAM_CODE_ACCEPTED {
		return fmt.Errorf("reply %v", rep)
	}
	got := make([]byte, len(payload))
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(st, got); err != nil {
		return err
	}
	if string(got) != payload {
		return fmt.Errorf("echo returned %q, want %q", got, payload)
	}
	return nil
}

// TestSilentHandshakes: forty QUIC handshakes a second that send their
// Initial and then nothing, for 20 s, from eight source addresses, cost
// legitimate gateways nothing: 10 of 10 new connections succeed and carry
// a stream, and a connection established before the flood keeps carrying
// streams throughout.
func TestSilentHandshakes(t *testing.T) {
	const (
		rate     = 40
		duration = 20 * time.Second
		legitN   = 10
	)
	w := newWorld(t, "a", "b")
	w.export("b", "echo", 9000, "spiffe://a.test")
	endpointWithID(w, "echo", echoServer(t))
	b := w.start(w.config("b", "b1", ""))

	established, err := w.dialGateway(context.Background(), "a", b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = established.CloseWithError(0, "") })
	if err := echoOver(established, "before"); err != nil {
		t.Fatalf("established connection before the flood: %v", err)
	}

	attacker := newSilentAttacker(t, b.IngressAddr(), 8)
	ctx, stop := context.WithTimeout(context.Background(), duration)
	defer stop()
	attackDone := make(chan error, 1)
	go func() { attackDone <- attacker.run(ctx, rate) }()

	// Established traffic, twice a second, all along.
	var estOK, estFailed atomic.Int64
	var estErr atomic.Value
	estDone := make(chan struct{})
	go func() {
		defer close(estDone)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := echoOver(established, fmt.Sprintf("est-%d", i)); err != nil {
				estFailed.Add(1)
				estErr.Store(err)
				continue
			}
			estOK.Add(1)
		}
	}()

	// New legitimate connections, spread over the flood after its first
	// seconds (when the old code's handshake slots were all taken).
	var failures []string
	var dialTimes []time.Duration
	first := time.NewTimer(4 * time.Second)
	<-first.C
	spacing := (duration - 5*time.Second) / legitN
	for i := range legitN {
		start := time.Now()
		conn, err := w.dialGateway(context.Background(), "a", b)
		if err == nil {
			err = echoOver(conn, fmt.Sprintf("new-%d", i))
			_ = conn.CloseWithError(0, "")
		}
		dialTimes = append(dialTimes, time.Since(start).Round(time.Millisecond))
		if err != nil {
			failures = append(failures, fmt.Sprintf("connection %d: %v", i, err))
		}
		if i < legitN-1 {
			next := time.NewTimer(time.Until(start.Add(spacing)))
			<-next.C
		}
	}
	<-ctx.Done()
	<-estDone
	if err := <-attackDone; err != nil {
		t.Fatal(err)
	}
	retries := value(b.admission.retries)
	t.Logf("%d silent attempts in %v (%d datagrams answered by the gateway, %v Retries); %d of %d new connections succeeded (dial + round trip: %v); established connection: %d round trips, %d failed",
		attacker.attempts.Load(), duration, attacker.received.Load(), retries, legitN-len(failures), legitN, dialTimes, estOK.Load(), estFailed.Load())
	if attacker.attempts.Load() < int64(rate*duration/time.Second)*3/4 {
		t.Errorf("only %d silent attempts were sent, want about %d", attacker.attempts.Load(), rate*int(duration/time.Second))
	}
	if attacker.received.Load() == 0 {
		t.Error("the gateway answered none of the silent attempts: the flood did not reach it")
	}
	for _, f := range failures {
		t.Error(f)
	}
	if n := estFailed.Load(); n > 0 {
		t.Errorf("%d round trips on the established connection failed, last: %v", n, estErr.Load())
	}
	if estOK.Load() == 0 {
		t.Error("no round trip on the established connection")
	}
	if err := established.Context().Err(); err != nil {
		t.Errorf("the established connection closed: %v", context.Cause(established.Context()))
	}
}
