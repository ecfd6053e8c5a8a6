package spire_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"

	"github.com/strait-mesh/strait/e2e/spire"
	"github.com/strait-mesh/strait/trust"
)

// TestSPIREAuthorityRotation rotates b.test's X.509 authority in SPIRE
// (prepare, sync through etcd, activate, taint the old one so that agents
// re-issue SVIDs, revoke it, sync again) while an mTLS connection from a.test
// stays open and new ones keep coming: none may fail.
func TestSPIREAuthorityRotation(t *testing.T) {
	bin := spire.Binaries(t)
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p := startPair(t, ctx, bin)
	p.federate(t, ctx)

	policy, err := trust.NewConsumerPolicy(td(t, "b.test"), []string{frontID})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serve(t, ctx, trust.TLSConfig{SVID: p.srcB, Bundles: p.srcB, Authorizer: policy.Authorizer()})
	clientConf := trust.TLSConfig{SVID: p.srcA, Bundles: p.srcA, Authorizer: trust.AuthorizeID(spiffeid.RequireFromString(cartID))}

	// One long-lived connection echoing, and a stream of new ones.
	var longOK, newOK, newFailed atomic.Int64
	var firstErr atomic.Value
	conf, err := trust.ClientTLSConfig(clientConf)
	if err != nil {
		t.Fatal(err)
	}
	long, err := (&tls.Dialer{Config: conf}).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	stop := make(chan struct{})
	progress := make(chan struct{}, 64)
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if err := connect(ctx, addr, clientConf); err != nil {
				newFailed.Add(1)
				firstErr.CompareAndSwap(nil, err)
				continue
			}
			newOK.Add(1)
			select {
			case progress <- struct{}{}:
			default:
			}
		}
	})
	echoLong := func() {
		t.Helper()
		if err := echoOn(long.(*tls.Conn)); err != nil {
			t.Fatalf("long-lived connection dropped: %v", err)
		}
		longOK.Add(1)
	}
	echoLong()

	la := localauthorityv1.NewLocalAuthorityClient(p.srvB.Conn)
	oldAuth := authorities(t, ctx, p.srvB)
	if len(oldAuth) != 1 {
		t.Fatalf("b.test starts with %d authorities", len(oldAuth))
	}

	// 1. Prepare; publish through etcd into a.test's SPIRE and workload.
	prep, err := la.PrepareX509Authority(ctx, &localauthorityv1.PrepareX509AuthorityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	changedA := p.srcA.Changed()
	p.sync(t, ctx)
	waitBundle(t, ctx, p.srcA, changedA, "b.test", 2)
	var newAuth *x509.Certificate
	for _, c := range authorities(t, ctx, p.srvB) {
		if !c.Equal(oldAuth[0]) {
			newAuth = c
		}
	}
	echoLong()
	t.Logf("prepared %s, a.test's workload trusts both (new ok %d, failed %d)", prep.GetPreparedAuthority().GetAuthorityId(), newOK.Load(), newFailed.Load())

	// 2. Activate and taint the old authority: b.test's agent re-issues its
	// workload's SVID from the new one.
	changedB := p.srcB.Changed()
	if _, err := la.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: prep.GetPreparedAuthority().GetAuthorityId()}); err != nil {
		t.Fatal(err)
	}
	state, err := la.GetX509AuthorityState(ctx, &localauthorityv1.GetX509AuthorityStateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := la.TaintX509Authority(ctx, &localauthorityv1.TaintX509AuthorityRequest{AuthorityId: state.GetOld().GetAuthorityId()}); err != nil {
		t.Fatal(err)
	}
	for {
		svid, err := p.srcB.GetX509SVID()
		if err == nil && svid.Certificates[0].CheckSignatureFrom(newAuth) == nil {
			break
		}
		select {
		case <-changedB:
			changedB = p.srcB.Changed()
		case <-ctx.Done():
			t.Fatal("b.test's workload never got an SVID from the new authority")
		}
	}
	p.sync(t, ctx) // the taint changes nothing in the X.509 authorities
	echoLong()
	t.Logf("activated, old tainted, b.test's SVID re-issued (new ok %d, failed %d)", newOK.Load(), newFailed.Load())

	// 3. Revoke the old authority and publish the smaller bundle.
	if _, err := la.RevokeX509Authority(ctx, &localauthorityv1.RevokeX509AuthorityRequest{AuthorityId: state.GetOld().GetAuthorityId()}); err != nil {
		t.Fatal(err)
	}
	changedA = p.srcA.Changed()
	p.sync(t, ctx)
	waitBundle(t, ctx, p.srcA, changedA, "b.test", 1)
	// Five new connections that began after the revocation reached a.test.
	for len(progress) > 0 {
		<-progress
	}
	for range 6 {
		select {
		case <-progress:
		case <-ctx.Done():
			t.Fatal("no new connection after the revocation")
		}
	}
	echoLong()
	close(stop)
	wg.Wait()
	records, err := listBundles(ctx, p.etcd)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		t.Logf("etcd trust/%s sequence %d, %d authorities", r.GetTrustDomain(), r.GetSequence(), len(r.GetX509Authorities()))
	}
	t.Logf("old authority revoked: long-lived echoes %d (connection never dropped), new connections ok %d, failed %d, %s",
		longOK.Load(), newOK.Load(), newFailed.Load(), time.Since(began).Round(time.Millisecond))
	if n := newFailed.Load(); n != 0 {
		t.Fatalf("%d new connections failed during the rotation, first: %v", n, firstErr.Load())
	}
}

// authorities returns the X.509 authorities of a server's own bundle.
func authorities(t *testing.T, ctx context.Context, srv *spire.Server) []*x509.Certificate {
	t.Helper()
	b, err := bundlev1.NewBundleClient(srv.Conn).GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for _, a := range b.GetX509Authorities() {
		c, err := x509.ParseCertificate(a.GetAsn1())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// echoOn sends a message on an open connection and checks the echo.
func echoOn(c *tls.Conn) error {
	msg := []byte("still here")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	_, err := io.ReadFull(c, got)
	return err
}
