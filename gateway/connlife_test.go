package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// lateTimer bounds how late the ingress' close may run after expiry plus
// grace on a loaded machine (timer and scheduling latency); bytes sent
// later than that must never come back.
const lateTimer = 500 * time.Millisecond

// dialFrozen connects to to's ingress as cluster's gateway with svid, which
// is never rotated: a gateway whose SVID source is stuck.
func (w *world) dialFrozen(t *testing.T, cluster string, to *running, svid *x509svid.SVID) *quic.Conn {
	t.Helper()
	if w.reg.src.Snapshot().TrustDomain(cluster) == "" {
		id, _ := trust.GatewayID(w.cas[cluster].TrustDomain(), cluster)
		w.reg.Put("dialer/"+cluster, &straitv1.Gateway{
			Cluster: cluster, Id: "dialer", TrustDomain: id.TrustDomain().Name(), SpiffeId: id.String(),
			Address: "127.0.0.1:1",
		})
	}
	tc := tlsconfig.MTLSClientConfig(svid, w.bundles, tlsconfig.AuthorizeAny())
	tc.NextProtos = []string{tunnel.ALPN}
	tc.MinVersion = tls.VersionTLS13
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := quic.DialAddr(ctx, to.IngressAddr().String(), tc, &quic.Config{MaxIdleTimeout: 10 * time.Second, KeepAlivePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CloseWithError(0, "") })
	return c
}

// openEcho opens a stream to b's echo service, sends one byte and waits for
// its echo. It returns the stream once the echo came back.
func openEcho(ctx context.Context, conn *quic.Conn) (*quic.Stream, error) {
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	hdr, err := tunnel.AppendHeader(nil, &straitv1.StreamHeader{Service: "echo", Namespace: "default", Port: 9000, SourceCluster: "a"})
	if err != nil {
		return nil, err
	}
	_ = st.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := st.Write(append(hdr, 'x')); err != nil {
		return nil, err
	}
	rep, err := tunnel.ReadReply(st, 0)
	if err != nil {
		return nil, err
	}
	if err := tunnel.Err(rep); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(st, make([]byte, 1)); err != nil {
		return nil, err
	}
	_ = st.SetDeadline(time.Time{})
	return st, nil
}

// TestExpiredPeerOpensNoStream: a remote gateway whose SVID source is
// frozen keeps its QUIC connection alive past its certificate's expiry (or,
// second case, past the maximum connection age) and keeps opening streams,
// while one stream opened earlier keeps sending. No stream opened after
// the deadline is accepted, no byte sent after deadline + grace comes back,
// and the ingress closes the connection with ConnErrReconnect. On the old
// code streams kept being accepted and relayed for as long as the
// connection lived.
func TestExpiredPeerOpensNoStream(t *testing.T) {
	const grace = 2 * time.Second
	for _, tc := range []struct {
		name   string
		ttl    time.Duration // of the frozen SVID
		maxAge time.Duration
	}{
		{"certificate expires", 20 * time.Second, 0},
		{"maximum connection age", time.Hour, 6 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, "a", "b")
			w.export("b", "echo", 9000, "spiffe://a.test")
			w.endpoint("b", "echo", "e1", echoServer(t))
			gc := &straitv1.GatewayConfig{ExpiryGrace: durationpb.New(grace)}
			if tc.maxAge > 0 {
				gc.MaxConnectionAge = durationpb.New(tc.maxAge)
			}
			w.reg.add(gc)
			b := w.start(w.config("b", "b1", ""))

			id, _ := trust.GatewayID(w.cas["a"].TrustDomain(), "a")
			svid, err := w.cas["a"].IssueX509SVID(id, tc.ttl)
			if err != nil {
				t.Fatal(err)
			}
			conn := w.dialFrozen(t, "a", b, svid)
			deadline := svid.Certificates[0].NotAfter
			// The certificate's expiry is exact; the ingress starts the
			// maximum age when it accepts, a moment after the dial
			// returned: streams opened within slack of it may go either way.
			var slack time.Duration
			if tc.maxAge > 0 {
				deadline, slack = time.Now().Add(tc.maxAge), 200*time.Millisecond
			}
			closeBy := deadline.Add(slack + grace)
			t.Logf("deadline in %s, grace %s", time.Until(deadline).Round(time.Millisecond), grace)

			ctx, cancel := context.WithTimeout(context.Background(), time.Until(closeBy)+15*time.Second)
			defer cancel()
			long, err := openEcho(ctx, conn)
			if err != nil {
				t.Fatalf("stream before the deadline: %v", err)
			}

			var mu sync.Mutex
			var lastEchoSent time.Time // send time of the last byte echoed on the long stream
			var acceptedLate, refused, acceptedEarly int
			var refusedErr error
			var wg sync.WaitGroup
			wg.Go(func() { // the long stream: one byte every 100ms
				buf := make([]byte, 1)
				for ctx.Err() == nil {
					sent := time.Now()
					if _, err := long.Write([]byte{'y'}); err != nil {
						return
					}
					if _, err := io.ReadFull(long, buf); err != nil {
						return
					}
					mu.Lock()
					lastEchoSent = sent
					mu.Unlock()
					time.Sleep(100 * time.Millisecond) // pacing the traffic, not waiting for state
				}
			})
			wg.Go(func() { // new streams every 200ms until the connection closes
				for ctx.Err() == nil && conn.Context().Err() == nil {
					opened := time.Now()
					st, err := openEcho(ctx, conn)
					mu.Lock()
					switch {
					case err == nil && opened.After(deadline.Add(slack)):
						acceptedLate++
					case err == nil && opened.After(deadline):
					case err == nil:
						acceptedEarly++
					case opened.After(deadline) && conn.Context().Err() == nil:
						refused++
						refusedErr = err
					}
					mu.Unlock()
					if st != nil {
						st.CancelRead(0)
						st.CancelWrite(0)
					}
					time.Sleep(200 * time.Millisecond) // pacing the attempts
				}
			})

			select {
			case <-conn.Context().Done():
			case <-ctx.Done():
				t.Errorf("connection still open %s after deadline + grace", time.Since(closeBy).Round(time.Millisecond))
			}
			closedAt := time.Now()
			cancel()
			wg.Wait()

			mu.Lock()
			defer mu.Unlock()
			t.Logf("closed %s after deadline + grace; streams accepted before the deadline %d, after it %d, refused after it %d (%v); last echoed byte sent %s after deadline + grace",
				closedAt.Sub(closeBy).Round(time.Millisecond), acceptedEarly, acceptedLate, refused, refusedErr, lastEchoSent.Sub(closeBy).Round(time.Millisecond))
			var ae *quic.ApplicationError
			if cause := context.Cause(conn.Context()); !errors.As(cause, &ae) || !ae.Remote || ae.ErrorCode != ConnErrReconnect {
				t.Errorf("connection closed by %v, want the ingress' ConnErrReconnect", cause)
			}
			if closedAt.After(closeBy.Add(lateTimer)) {
				t.Errorf("connection closed %s after deadline + grace", closedAt.Sub(closeBy))
			}
			if acceptedEarly == 0 {
				t.Error("no stream accepted before the deadline: the setup is broken")
			}
			if acceptedLate > 0 {
				t.Errorf("%d streams opened after the deadline were accepted", acceptedLate)
			}
			if refused == 0 {
				t.Error("no stream was refused after the deadline: the test did not exercise the refusal")
			}
			var se *quic.StreamError
			if refusedErr != nil && (!errors.As(refusedErr, &se) || se.ErrorCode != StreamErrReconnect) {
				t.Errorf("late stream refused with %v, want StreamErrReconnect", refusedErr)
			}
			if lastEchoSent.After(closeBy.Add(lateTimer)) {
				t.Errorf("a byte sent %s after deadline + grace was relayed", lastEchoSent.Sub(closeBy))
			}
			if lastEchoSent.Before(deadline) {
				t.Errorf("the long stream stopped relaying before the deadline (last byte sent %s before it): open streams get the grace", deadline.Sub(lastEchoSent))
			}
			if got := testutil.ToFloat64(b.m.streams.WithLabelValues(dirIngress, "a", resultExpired)); int(got) < refused {
				t.Errorf("strait_gateway_streams_total{result=expired} = %v, want at least the %d refusals seen", got, refused)
			}
		})
	}
}

// TestRotationKeepsTrafficFlowing: both gateways hold 20s SVIDs rotated at
// half life, and a maximum connection age applies, while requests flow for
// 25s, past the expiry of every first certificate. The pool replaces its
// connection before its own certificate, the peer's, or the maximum age
// ends it, so no request fails and the ingress never refuses a stream for
// expiry.
func TestRotationKeepsTrafficFlowing(t *testing.T) {
	t.Parallel()
	const ttl = 20 * time.Second
	w := newWorld(t, "a", "b")
	w.export("b", "echo", 9000, "spiffe://a.test")
	w.endpoint("b", "echo", "e1", echoServer(t))
	w.reg.add(&straitv1.GatewayConfig{MaxConnectionAge: durationpb.New(12 * time.Second), ExpiryGrace: durationpb.New(2 * time.Second)})
	ctx, cancel := context.WithCancel(context.Background())
	var srcs sync.WaitGroup
	t.Cleanup(func() { cancel(); srcs.Wait() })
	rotating := func(cluster, id string) Config {
		cfg := w.config(cluster, id, "")
		gid, _ := trust.GatewayID(w.cas[cluster].TrustDomain(), cluster)
		src, err := trust.NewCASource(trust.CASourceConfig{CA: w.cas[cluster], ID: gid, TTL: ttl, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		srcs.Go(func() { _ = src.Run(ctx) })
		cfg.SVIDs = src
		return cfg
	}
	b := w.start(rotating("b", "b1"))
	a := w.start(rotating("a", "a1"))
	_ = b

	ok, failed, lastErr, conns := pacedEchoes(t, a, ttl+5*time.Second, 50*time.Millisecond)
	expired := testutil.ToFloat64(b.m.streams.WithLabelValues(dirIngress, "a", resultExpired))
	closedByPeer := 0 // the ingress ended them: the pool was late
	for c := range conns {
		if closedForReconnect(c) {
			closedByPeer++
		}
	}
	t.Logf("%d requests succeeded, %d failed (last: %v); %d pooled connections used, %d of them closed by the ingress for expiry; %v streams refused for expiry",
		ok, failed, lastErr, len(conns), closedByPeer, expired)
	if closedByPeer > 0 {
		t.Errorf("the ingress closed %d pooled connections for expiry or age: the pool did not replace them in time", closedByPeer)
	}
	if failed > 0 {
		t.Errorf("%d requests failed during rotation (last: %v)", failed, lastErr)
	}
	if len(conns) < 3 {
		t.Errorf("the pool used %d connections in %s, want at least 3 (replaced before each certificate or age limit)", len(conns), ttl+5*time.Second)
	}
	if expired != 0 {
		t.Errorf("the ingress refused %v streams for expiry: the pool did not replace its connection in time", expired)
	}
}

// TestIngressAgeLimitReconnectsWithoutFailure: the ingress' cluster sets a
// maximum connection age that the egress' cluster does not know, so the
// ingress ends connections before the pool would. The pool treats the
// ingress' ConnErrReconnect (and the streams refused with
// StreamErrReconnect in between) as "reconnect": no request fails and no
// peer failure is counted.
func TestIngressAgeLimitReconnectsWithoutFailure(t *testing.T) {
	t.Parallel()
	const maxAge, run = 2 * time.Second, 9 * time.Second
	w := newWorld(t, "a", "b")
	w.export("b", "echo", 9000, "spiffe://a.test")
	w.endpoint("b", "echo", "e1", echoServer(t))
	w.reg.mu.Lock() // b's own configuration, which a does not read
	w.reg.base = append(w.reg.base, federation.Record{
		Info:    federation.KeyInfo{Kind: federation.KindConfig, Cluster: "b"},
		Message: &straitv1.GatewayConfig{MaxConnectionAge: durationpb.New(maxAge), ExpiryGrace: durationpb.New(time.Second)},
	})
	w.reg.publishLocked()
	w.reg.mu.Unlock()
	b := w.start(w.config("b", "b1", ""))
	a := w.start(w.config("a", "a1", ""))

	ok, failed, lastErr, conns := pacedEchoes(t, a, run, 20*time.Millisecond)
	expired := testutil.ToFloat64(b.m.streams.WithLabelValues(dirIngress, "a", resultExpired))
	peerFailures := testutil.ToFloat64(a.m.peerFailures.WithLabelValues("b", "b1"))
	t.Logf("%d requests succeeded, %d failed (last: %v); %d pooled connections; %v streams refused for age at the ingress; %v peer failures counted by the pool",
		ok, failed, lastErr, len(conns), expired, peerFailures)
	if len(conns) < 3 {
		t.Errorf("the pool used %d connections in %s with a %s maximum age at the ingress, want at least 3: the ingress did not end them", len(conns), run, maxAge)
	}
	if failed > 0 {
		t.Errorf("%d requests failed while the ingress ended connections by age (last: %v)", failed, lastErr)
	}
	if peerFailures != 0 {
		t.Errorf("the pool counted %v failures of b1: a reconnect is not a failure", peerFailures)
	}
}

// pacedEchoes sends one echo request through a's egress every pace for
// run, and returns how many succeeded and failed, the last failure, and
// every pooled connection the pool held between requests.
func pacedEchoes(t *testing.T, a *running, run, pace time.Duration) (ok, failed int, lastErr error, conns map[*pconn]bool) {
	t.Helper()
	hello := clientHello(t, "9000.echo.default.any.strait")
	conns = map[*pconn]bool{}
	end := time.Now().Add(run)
	for time.Now().Before(end) {
		got, err := roundTrip(a.EgressAddr(), hello, []byte("ping"))
		if err == nil && string(got) != string(hello)+"ping" {
			err = errors.New("echo returned other bytes")
		}
		if err != nil {
			failed++
			lastErr = err
		} else {
			ok++
		}
		a.pool.mu.Lock()
		for _, pr := range a.pool.peers {
			pr.mu.Lock()
			for _, s := range pr.shards {
				if s.conn != nil {
					conns[s.conn] = true
				}
			}
			pr.mu.Unlock()
		}
		a.pool.mu.Unlock()
		time.Sleep(pace) // pacing the requests
	}
	return ok, failed, lastErr, conns
}
