package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/sync/errgroup"

	"github.com/strait-mesh/strait/gateway/tunnel"
	"github.com/strait-mesh/strait/trust"
)

// untrustedClient returns a TLS client configuration presenting cert (nil
// for none) that does not check the server.
func untrustedClient(t testing.TB, svid *x509svid.SVID) *tls.Config {
	c := &tls.Config{
		InsecureSkipVerify: true, NextProtos: []string{tunnel.ALPN}, MinVersion: tls.VersionTLS13,
		// The cheapest key exchange for the attacker, as a flood would pick.
		CurvePreferences: []tls.CurveID{tls.X25519},
	}
	if svid != nil {
		certs, key, err := svid.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(certs, key)
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c
}

// rejected reports whether a connection attempt with tc is refused, and
// fails if the gateway lets it live.
func rejected(ctx context.Context, tr *quic.Transport, addr net.Addr, tc *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, addr, tc, &quic.Config{HandshakeIdleTimeout: 5 * time.Second})
	if err != nil {
		return nil
	}
	// TLS 1.3: the client may finish before the server checked its
	// certificate; the server then closes the connection.
	select {
	case <-c.Context().Done():
		return nil
	case <-ctx.Done():
		_ = c.CloseWithError(0, "")
		return fmt.Errorf("connection with an untrusted certificate stayed open")
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func TestUntrustedHandshakes(t *testing.T) {
	w := newWorld(t, "a", "b")
	w.export("b", "echo", 9000, "spiffe://a.test")
	w.endpoint("b", "echo", "e1", echoServer(t))
	a := w.start(w.config("a", "a1", ""))
	b := w.start(w.config("b", "b1", ""))

	// An attacker's CA for the same trust domain name as cluster a.
	evil, err := trust.NewCA(trust.CAConfig{TrustDomain: spiffeid.RequireTrustDomainFromString("a.test")})
	if err != nil {
		t.Fatal(err)
	}
	evilID, _ := trust.GatewayID(evil.TrustDomain(), "a")
	evilSVID, err := evil.IssueX509SVID(evilID, 0)
	if err != nil {
		t.Fatal(err)
	}
	workloadID, _ := trust.WorkloadID(w.cas["a"].TrustDomain(), "default", "app")
	workloadSVID, err := w.cas["a"].IssueX509SVID(workloadID, 0)
	if err != nil {
		t.Fatal(err)
	}
	floodN := 10000
	if raceEnabled {
		floodN = 1000
	}
	tests := []struct {
		name string
		svid *x509svid.SVID
		n    int
	}{
		{"no certificate", nil, 20},
		{"workload SVID of a trusted domain", workloadSVID, 20},
		{"gateway ID from an untrusted CA", evilSVID, floodN},
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	t.Cleanup(func() { _ = tr.Close() })
	hello := clientHello(t, "9000.echo.default.any.strait")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, goroutines := heapInUse(), runtime.NumGoroutine()
			failsBefore, refusedBefore := sum(b.m.handshakeFails), value(b.m.handshakeRefused)
			var legit atomic.Int64
			ctx, stop := context.WithCancel(context.Background())
			var traffic errgroup.Group
			traffic.Go(func() error { return legitTraffic(ctx, a, hello, &legit) })

			start := time.Now()
			var grp errgroup.Group
			grp.SetLimit(50)
			tc := untrustedClient(t, tt.svid)
			for range tt.n {
				grp.Go(func() error { return rejected(context.Background(), tr, b.IngressAddr(), tc) })
			}
			err := grp.Wait()
			elapsed := time.Since(start)
			stop()
			if terr := traffic.Wait(); terr != nil {
				t.Fatalf("legitimate traffic failed during the flood: %v", terr)
			}
			if err != nil {
				t.Fatal(err)
			}
			after := heapInUse()
			fails := sum(b.m.handshakeFails) - failsBefore
			refused := value(b.m.handshakeRefused) - refusedBefore
			t.Logf("%d rejected handshakes in %v (%.0f/s); gateway process heap in use %.1f MiB before, %.1f MiB after (%+.1f MiB); goroutines %d before, %d after; %d legitimate round trips meanwhile; handshakes failed %v, refused before TLS %v",
				tt.n, elapsed.Round(time.Millisecond), float64(tt.n)/elapsed.Seconds(), mib(before), mib(after), mib(after)-mib(before), goroutines, runtime.NumGoroutine(), legit.Load(), fails, refused)
			if legit.Load() == 0 {
				t.Fatal("no legitimate traffic completed during the flood")
			}
			if after > before+32<<20 {
				t.Fatalf("heap grew by %.1f MiB", mib(after)-mib(before))
			}
		})
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// legitTraffic runs round trips through a's egress until ctx ends; any
// failure is an error.
func legitTraffic(ctx context.Context, a *running, hello []byte, ok *atomic.Int64) error {
	for i := 0; ctx.Err() == nil; i++ {
		if err := finishStreamCtx(a, hello, payloadFor(i)); err != nil {
			return err
		}
		ok.Add(1)
	}
	return nil
}

func finishStreamCtx(a *running, hello, payload []byte) error {
	c, err := openStream(a.EgressAddr(), hello)
	if err != nil {
		return err
	}
	return finishStream(c, payload)
}
