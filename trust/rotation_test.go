package trust

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// rotationCluster is one side of the rotation test: a CA, its SVID source,
// and a bundle store that trusts the other side.
type rotationCluster struct {
	ca    *CA
	src   *CASource
	store *BundleStore
	seq   uint64 // sequence of the bundle last published
}

func newRotationCluster(t *testing.T, clock clockwork.Clock, domain, svidID string, peer spiffeid.TrustDomain) *rotationCluster {
	t.Helper()
	ca := newTestCA(t, domain, clock.Now)
	src, err := NewCASource(CASourceConfig{CA: ca, ID: id(t, svidID), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	store, err := NewBundleStore(BundleStoreConfig{TrustDomain: ca.TrustDomain(), Local: src, Federates: []spiffeid.TrustDomain{peer}})
	if err != nil {
		t.Fatal(err)
	}
	return &rotationCluster{ca: ca, src: src, store: store}
}

// publish hands this cluster's bundle to the other's store, as the
// federation watch would, with the next sequence.
func (c *rotationCluster) publish(t *testing.T, to *rotationCluster) {
	t.Helper()
	c.seq++
	if err := to.store.Apply(c.ca.TrustBundle(c.seq, time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// rotationStats counts what happened to connections during the test.
type rotationStats struct {
	newOK, newFailed     atomic.Int64
	longExchanges        atomic.Int64
	longFailed           atomic.Int64
	serverHandshakeFails atomic.Int64

	mu     sync.Mutex
	errors []error
}

func (s *rotationStats) fail(counter *atomic.Int64, err error) {
	counter.Add(1)
	s.mu.Lock()
	if len(s.errors) < 10 {
		s.errors = append(s.errors, err)
	}
	s.mu.Unlock()
}

// TestRotationKeepsConnections rotates the root of both trust domains
// (prepare, publish, activate, drop, publish) and their SVIDs, twice at half
// life, while 50 mTLS connections stay open exchanging data and new ones
// keep coming. No connection may drop and no handshake may fail.
func TestRotationKeepsConnections(t *testing.T) {
	const (
		longLived = 50
		churners  = 4
		msgSize   = 256
		perStep   = 25
	)
	start := time.Now().Truncate(time.Second)
	clock := clockwork.NewFakeClockAt(start)
	a := newRotationCluster(t, clock, "a.test", "spiffe://a.test/ns/web/sa/front", td(t, "b.test"))
	b := newRotationCluster(t, clock, "b.test", "spiffe://b.test/ns/shop/sa/cart", td(t, "a.test"))
	a.publish(t, b)
	b.publish(t, a)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range []*rotationCluster{a, b} {
		wg.Go(func() { _ = c.src.Run(ctx) })
	}
	defer wg.Wait()
	defer cancel()
	waitCtx, waitCancel := context.WithTimeout(ctx, 30*time.Second)
	defer waitCancel()
	if err := clock.BlockUntilContext(waitCtx, 2); err != nil {
		t.Fatal(err)
	}

	policy, err := NewConsumerPolicy(b.ca.TrustDomain(), []string{"spiffe://a.test"})
	if err != nil {
		t.Fatal(err)
	}
	serverConf, err := ServerTLSConfig(TLSConfig{SVID: b.src, Bundles: b.store, Authorizer: policy.Authorizer(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	clientConf, err := ClientTLSConfig(TLSConfig{SVID: a.src, Bundles: a.store,
		Authorizer: AuthorizeID(id(t, "spiffe://b.test/ns/shop/sa/cart")), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}

	stats := &rotationStats{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var serverWG sync.WaitGroup
	defer serverWG.Wait()
	defer ln.Close()
	serverWG.Go(func() { serveEcho(ln, serverConf, stats, &serverWG) })

	dial := func() (*tls.Conn, error) {
		d := tls.Dialer{Config: clientConf}
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return nil, err
		}
		return c.(*tls.Conn), nil
	}

	// The long-lived connections: each sends and checks an echo on every
	// tick until stopped, then once more to prove it is still up.
	stopLong := make(chan struct{})
	var longWG sync.WaitGroup
	established := make(chan error, longLived)
	for range longLived {
		longWG.Go(func() {
			conn, err := dial()
			established <- err
			if err != nil {
				return
			}
			defer conn.Close()
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for {
				if err := echo(conn, msgSize); err != nil {
					stats.fail(&stats.longFailed, err)
					return
				}
				stats.longExchanges.Add(1)
				select {
				case <-stopLong:
					if err := echo(conn, msgSize); err != nil {
						stats.fail(&stats.longFailed, err)
					}
					return
				case <-tick.C:
				}
			}
		})
	}
	for range longLived {
		if err := <-established; err != nil {
			t.Fatalf("establishing the long-lived connections: %v", err)
		}
	}

	// The churn: new connections, one echo each, as fast as they go.
	stopChurn := make(chan struct{})
	progress := make(chan int, 1024)
	var churnWG sync.WaitGroup
	for w := range churners {
		churnWG.Go(func() {
			for {
				select {
				case <-stopChurn:
					return
				default:
				}
				conn, err := dial()
				if err == nil {
					err = echo(conn, msgSize)
					conn.Close()
				}
				if err != nil {
					stats.fail(&stats.newFailed, err)
					continue
				}
				stats.newOK.Add(1)
				select {
				case progress <- w:
				default:
				}
			}
		})
	}
	// settle waits until every churner has completed perStep connections
	// after the step (all but the first of which began after it), so that
	// each state is exercised by handshakes.
	settle := func(step string) {
		t.Helper()
		for len(progress) > 0 {
			<-progress
		}
		seen := make([]int, churners)
		timeout := time.After(30 * time.Second)
		for remaining := churners; remaining > 0; {
			select {
			case w := <-progress:
				seen[w]++
				if seen[w] == perStep {
					remaining--
				}
			case <-timeout:
				t.Fatalf("%s: no progress (new ok %d, failed %d)", step, stats.newOK.Load(), stats.newFailed.Load())
			}
		}
		t.Logf("%-34s new connections ok=%d failed=%d, long-lived exchanges=%d failed=%d",
			step+":", stats.newOK.Load(), stats.newFailed.Load(), stats.longExchanges.Load(), stats.longFailed.Load())
	}
	// advance moves the fake clock and waits until both sources, having
	// rotated if due, wait on their timers again.
	advance := func(d time.Duration, wantRotation bool) {
		t.Helper()
		changedA, changedB := a.src.Changed(), b.src.Changed()
		clock.Advance(d)
		if wantRotation {
			waitChanged(t, changedA)
			waitChanged(t, changedB)
		}
		if err := clock.BlockUntilContext(waitCtx, 2); err != nil {
			t.Fatal(err)
		}
	}

	settle("start")
	oldA, oldB := a.ca.ActiveRoot(), b.ca.ActiveRoot()

	// 1. Prepare new roots and publish them beside the old ones.
	for _, c := range []*rotationCluster{a, b} {
		if _, err := c.ca.PrepareRoot(); err != nil {
			t.Fatal(err)
		}
	}
	a.publish(t, b)
	b.publish(t, a)
	settle("roots prepared and published")

	// 2. Activate them: both sources re-issue with the new roots.
	changedA, changedB := a.src.Changed(), b.src.Changed()
	for _, c := range []*rotationCluster{a, b} {
		if err := c.ca.ActivateRoot(); err != nil {
			t.Fatal(err)
		}
	}
	waitChanged(t, changedA)
	waitChanged(t, changedB)
	for _, c := range []*rotationCluster{a, b} {
		svid, _ := c.src.GetX509SVID()
		if err := svid.Certificates[0].CheckSignatureFrom(c.ca.ActiveRoot()); err != nil {
			t.Fatalf("%s: SVID not signed by the new root: %v", c.ca.TrustDomain(), err)
		}
	}
	settle("roots activated, SVIDs re-issued")

	// 3. Half life: both SVIDs rotate.
	advance(DefaultSVIDTTL/2+time.Second, true)
	settle("SVIDs rotated at half life")

	// 4. The old roots cannot go while the SVIDs they signed live.
	for _, c := range []*rotationCluster{a, b} {
		if err := c.ca.DropRoot(c.ca.Roots()[0]); !errors.Is(err, ErrRootInUse) {
			t.Fatalf("%s: early DropRoot: got %v, want ErrRootInUse", c.ca.TrustDomain(), err)
		}
	}
	// 5. Past their expiry (and the next half life), drop and publish.
	advance(DefaultSVIDTTL/2, true)
	if err := a.ca.DropRoot(oldA); err != nil {
		t.Fatal(err)
	}
	if err := b.ca.DropRoot(oldB); err != nil {
		t.Fatal(err)
	}
	a.publish(t, b)
	b.publish(t, a)
	for _, pair := range [][2]*rotationCluster{{a, b}, {b, a}} {
		peer, _ := pair[0].store.GetX509BundleForTrustDomain(pair[1].ca.TrustDomain())
		if len(peer.X509Authorities()) != 1 {
			t.Fatalf("%s still trusts %d roots of its peer", pair[0].ca.TrustDomain(), len(peer.X509Authorities()))
		}
	}
	settle("old roots dropped and published")

	// 6. One more SVID rotation under the new roots only.
	advance(DefaultSVIDTTL/2, true)
	settle("SVIDs rotated again")

	close(stopChurn)
	churnWG.Wait()
	close(stopLong)
	longWG.Wait()

	t.Logf("long-lived connections: %d open throughout, %d exchanges, %d failed", longLived, stats.longExchanges.Load(), stats.longFailed.Load())
	t.Logf("new connections: %d accepted, %d refused or dropped; server handshake failures: %d",
		stats.newOK.Load(), stats.newFailed.Load(), stats.serverHandshakeFails.Load())
	for _, err := range stats.errors {
		t.Errorf("connection error (%s): %v", ClassifyHandshakeError(err), err)
	}
	if stats.longFailed.Load() != 0 || stats.newFailed.Load() != 0 || stats.serverHandshakeFails.Load() != 0 {
		t.Fatal("connections were dropped or refused during rotation")
	}
}

// serveEcho accepts mTLS connections and echoes what they send.
func serveEcho(ln net.Listener, conf *tls.Config, stats *rotationStats, wg *sync.WaitGroup) {
	for {
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			conn := tls.Server(raw, conf)
			defer conn.Close()
			if err := conn.Handshake(); err != nil {
				stats.fail(&stats.serverHandshakeFails, err)
				return
			}
			_, _ = io.Copy(conn, conn)
		})
	}
}

// echo sends n random bytes and checks they come back.
func echo(conn *tls.Conn, n int) error {
	out := make([]byte, n)
	_, _ = rand.Read(out)
	if _, err := conn.Write(out); err != nil {
		return err
	}
	in := make([]byte, n)
	if _, err := io.ReadFull(conn, in); err != nil {
		return err
	}
	if !bytes.Equal(in, out) {
		return errors.New("echo mismatch")
	}
	return nil
}

// TestActivatingBeforePublishingIsRefused is the control of the rotation
// test: skipping the publish step between PrepareRoot and ActivateRoot makes
// the peer refuse the new SVIDs, which is why the steps exist.
func TestActivatingBeforePublishingIsRefused(t *testing.T) {
	caA, caB := newTestCA(t, "a.test", nil), newTestCA(t, "b.test", nil)
	m := newMetrics(t)
	storeA, storeB := newStore(t, caA, nil), newStore(t, caB, m)
	federate(t, caA, 1, storeB)
	federate(t, caB, 1, storeA)
	if _, err := caA.PrepareRoot(); err != nil {
		t.Fatal(err)
	}
	if err := caA.ActivateRoot(); err != nil {
		t.Fatal(err)
	}
	res := handshake(t,
		side{svid: staticSVID{issue(t, caB, "spiffe://b.test/ns/shop/sa/cart")}, bundles: storeB, metrics: m},
		side{svid: staticSVID{issue(t, caA, "spiffe://a.test/ns/web/sa/front")}, bundles: storeA})
	expectServerRefusal(t, res, m, ReasonUntrustedDomain)
}
