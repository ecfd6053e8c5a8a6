package spire_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/e2e/spire"
	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/internal/etcdtest"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
	"github.com/strait-mesh/strait/trust/spiresync"
)

const (
	frontID = "spiffe://a.test/ns/web/sa/front"
	cartID  = "spiffe://b.test/ns/shop/sa/cart"
)

// TestFederationThroughEtcd runs a SPIRE server and agent for trust domains
// a.test and b.test. A workload of a.test (this process, attested by its
// uid) connects with mTLS to a workload of b.test: refused while the domains
// do not know each other, accepted once the sync loops have moved each
// server's bundle through etcd into the other server, and the registration
// entries federate with the other domain.
func TestFederationThroughEtcd(t *testing.T) {
	bin := spire.Binaries(t)
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p := startPair(t, ctx, bin)
	t.Logf("SPIRE up, both workloads have SVIDs after %s", time.Since(began).Round(time.Millisecond))
	assertSVID(t, p.srcA, frontID)
	assertSVID(t, p.srcB, cartID)

	// The b.test workload accepts the a.test workload only, verified
	// against the bundles its agent delivers.
	policy, err := trust.NewConsumerPolicy(td(t, "b.test"), []string{frontID})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serve(t, ctx, trust.TLSConfig{SVID: p.srcB, Bundles: p.srcB, Authorizer: policy.Authorizer()})
	clientConf := trust.TLSConfig{SVID: p.srcA, Bundles: p.srcA, Authorizer: trust.AuthorizeID(spiffeid.RequireFromString(cartID))}

	// Before federation: refused, because a.test has no bundle of b.test.
	err = connect(ctx, addr, clientConf)
	var unknown *trust.UnknownTrustDomainError
	if !errors.As(err, &unknown) || trust.ClassifyHandshakeError(err) != trust.ReasonUntrustedDomain {
		t.Fatalf("before federation: got %v, want *trust.UnknownTrustDomainError", err)
	}
	t.Logf("before federation, refused: %v", err)
	// Entries cannot federate with a domain SPIRE has no bundle of yet.
	if err := p.srvA.FederateEntry(ctx, p.entryA, "b.test"); err == nil {
		t.Fatal("SPIRE accepted federates_with b.test without its bundle")
	}

	p.federate(t, ctx)
	records, err := listBundles(ctx, p.etcd)
	if err != nil || len(records) != 2 {
		t.Fatalf("bundles in etcd: %d (%v), want 2", len(records), err)
	}
	for _, r := range records {
		t.Logf("etcd %s: trust domain %s, sequence %d, %d authorities", federation.Keyspace{}.Bundle(r.GetTrustDomain()),
			r.GetTrustDomain(), r.GetSequence(), len(r.GetX509Authorities()))
	}

	if err := connect(ctx, addr, clientConf); err != nil {
		t.Fatalf("after federation: %v", err)
	}
	t.Logf("after federation (Workload API bundles), accepted, %s since start", time.Since(began).Round(time.Millisecond))

	// The same through Strait's bundle stores, fed from etcd as gateways and
	// proxies are: a caller the policy does not list is still refused.
	storeA := bundleStore(t, ctx, p.srcA, p.etcd)
	storeB := bundleStore(t, ctx, p.srcB, p.etcd)
	addr2, _ := serve(t, ctx, trust.TLSConfig{SVID: p.srcB, Bundles: storeB, Authorizer: policy.Authorizer()})
	if err := connect(ctx, addr2, trust.TLSConfig{SVID: p.srcA, Bundles: storeA,
		Authorizer: trust.AuthorizeID(spiffeid.RequireFromString(cartID))}); err != nil {
		t.Fatalf("through bundle stores: %v", err)
	}
	strict, err := trust.NewConsumerPolicy(td(t, "b.test"), []string{"spiffe://a.test/ns/web/sa/other"})
	if err != nil {
		t.Fatal(err)
	}
	addr3, serverErrs := serve(t, ctx, trust.TLSConfig{SVID: p.srcB, Bundles: storeB, Authorizer: strict.Authorizer()})
	err = connect(ctx, addr3, trust.TLSConfig{SVID: p.srcA, Bundles: storeA, Authorizer: tlsconfig.AuthorizeAny()})
	if err == nil {
		t.Fatal("a caller the export does not list was accepted")
	}
	serverErr := <-serverErrs
	var unauthorized *trust.UnauthorizedError
	if !errors.As(serverErr, &unauthorized) || unauthorized.ID.String() != frontID {
		t.Fatalf("server: got %v, want *trust.UnauthorizedError for %s", serverErr, frontID)
	}
	t.Logf("caller not listed by the export, refused: server %v; client sees %v", serverErr, err)
	t.Logf("total %s", time.Since(began).Round(time.Millisecond))
}

// pair is a SPIRE server, agent and workload for a.test and for b.test, an
// etcd, and a bundle sync loop per server.
type pair struct {
	etcd           *clientv3.Client
	srvA, srvB     *spire.Server
	entryA, entryB string
	srcA, srcB     *trust.WorkloadSource
	syncA, syncB   *spiresync.Syncer
}

func startPair(t *testing.T, ctx context.Context, bin spire.Bin) *pair {
	t.Helper()
	_, etcd := etcdtest.Start(t, 1)
	store := federation.NewStore(etcd, federation.Keyspace{})
	p := &pair{etcd: etcd}
	p.srvA = spire.StartServer(t, bin, "a.test")
	p.srvB = spire.StartServer(t, bin, "b.test")
	agentA, agentB := p.srvA.StartAgent(t), p.srvB.StartAgent(t)
	p.entryA = p.srvA.CreateWorkloadEntry(t, agentA, frontID)
	p.entryB = p.srvB.CreateWorkloadEntry(t, agentB, cartID)
	p.srcA = runWorkloadSource(t, ctx, agentA)
	p.srcB = runWorkloadSource(t, ctx, agentB)
	lister := spiresync.BundleListerFunc(func(ctx context.Context) ([]*straitv1.TrustBundle, error) {
		return listBundles(ctx, etcd)
	})
	p.syncA = newSyncer(t, p.srvA, store, lister)
	p.syncB = newSyncer(t, p.srvB, store, lister)
	return p
}

// sync runs the sync loops once each: A and B push, then each pulls the
// other's bundle.
func (p *pair) sync(t *testing.T, ctx context.Context) {
	t.Helper()
	for _, s := range []*spiresync.Syncer{p.syncA, p.syncB, p.syncA} {
		if err := s.SyncOnce(ctx); err != nil {
			t.Fatalf("sync: %v", err)
		}
	}
}

// federate syncs the bundles through etcd, makes the entries federate with
// the other domain, and waits until each workload has the other's bundle.
func (p *pair) federate(t *testing.T, ctx context.Context) {
	t.Helper()
	p.sync(t, ctx)
	assertFederated(t, ctx, p.srvA, p.srvB)
	assertFederated(t, ctx, p.srvB, p.srvA)
	changedA, changedB := p.srcA.Changed(), p.srcB.Changed()
	if err := p.srvA.FederateEntry(ctx, p.entryA, "b.test"); err != nil {
		t.Fatal(err)
	}
	if err := p.srvB.FederateEntry(ctx, p.entryB, "a.test"); err != nil {
		t.Fatal(err)
	}
	waitBundle(t, ctx, p.srcA, changedA, "b.test", 1)
	waitBundle(t, ctx, p.srcB, changedB, "a.test", 1)
}

func td(t *testing.T, name string) spiffeid.TrustDomain {
	t.Helper()
	d, err := spiffeid.TrustDomainFromString(name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func runWorkloadSource(t *testing.T, ctx context.Context, a *spire.Agent) *trust.WorkloadSource {
	t.Helper()
	src := trust.NewWorkloadSource(trust.WorkloadSourceConfig{Addr: a.SocketAddr()})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if err := src.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return src
}

func assertSVID(t *testing.T, src *trust.WorkloadSource, want string) {
	t.Helper()
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != want {
		t.Fatalf("SVID %s, want %s", svid.ID, want)
	}
	t.Logf("workload SVID %s, expires %s", svid.ID, svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
}

func newSyncer(t *testing.T, srv *spire.Server, pub spiresync.BundlePublisher, lister spiresync.BundleLister) *spiresync.Syncer {
	t.Helper()
	s, err := spiresync.New(spiresync.Config{
		Conn:        srv.Conn,
		TrustDomain: td(t, srv.TrustDomain),
		Publisher:   pub,
		Lister:      lister,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// listBundles reads every bundle record in etcd with the federation code
// gateways use.
func listBundles(ctx context.Context, cli *clientv3.Client) ([]*straitv1.TrustBundle, error) {
	snap, _, err := federation.ListSnapshot(ctx, cli, federation.Keyspace{})
	if err != nil {
		return nil, err
	}
	return snap.Bundles(), nil
}

// assertFederated checks that srv holds peer's bundle as a federated bundle.
func assertFederated(t *testing.T, ctx context.Context, srv, peer *spire.Server) {
	t.Helper()
	own, err := bundlev1.NewBundleClient(peer.Conn).GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil {
		t.Fatal(err)
	}
	fed, err := bundlev1.NewBundleClient(srv.Conn).GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: peer.TrustDomain})
	if err != nil {
		t.Fatalf("%s has no federated bundle of %s: %v", srv.TrustDomain, peer.TrustDomain, err)
	}
	if len(own.GetX509Authorities()) != len(fed.GetX509Authorities()) {
		t.Fatalf("%s holds %d authorities of %s, which has %d", srv.TrustDomain, len(fed.GetX509Authorities()), peer.TrustDomain, len(own.GetX509Authorities()))
	}
	for i := range own.GetX509Authorities() {
		if !bytes.Equal(own.GetX509Authorities()[i].GetAsn1(), fed.GetX509Authorities()[i].GetAsn1()) {
			t.Fatalf("%s holds a different authority of %s", srv.TrustDomain, peer.TrustDomain)
		}
	}
}

// waitBundle waits, on the source's change notifications, until it delivers
// a bundle of trust domain name with the given number of authorities.
func waitBundle(t *testing.T, ctx context.Context, src *trust.WorkloadSource, changed <-chan struct{}, name string, authorities int) {
	t.Helper()
	for {
		if b, err := src.GetX509BundleForTrustDomain(td(t, name)); err == nil && len(b.X509Authorities()) == authorities {
			return
		}
		select {
		case <-changed:
			changed = src.Changed()
		case <-ctx.Done():
			t.Fatalf("the Workload API never delivered a bundle of %s with %d authorities", name, authorities)
		}
	}
}

func bundleStore(t *testing.T, ctx context.Context, local *trust.WorkloadSource, etcd *clientv3.Client) *trust.BundleStore {
	t.Helper()
	svid, err := local.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	s, err := trust.NewBundleStore(trust.BundleStoreConfig{TrustDomain: svid.ID.TrustDomain(), Local: local})
	if err != nil {
		t.Fatal(err)
	}
	records, err := listBundles(ctx, etcd)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(records); err != nil {
		t.Fatal(err)
	}
	return s
}

// serve runs an mTLS echo server and returns its address and its handshake
// failures.
func serve(t *testing.T, ctx context.Context, cfg trust.TLSConfig) (string, <-chan error) {
	t.Helper()
	conf, err := trust.ServerTLSConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	errs := make(chan error, 16)
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				conn := tls.Server(raw, conf)
				defer conn.Close()
				if err := conn.HandshakeContext(ctx); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				_, _ = io.Copy(conn, conn)
			}()
		}
	}()
	return ln.Addr().String(), errs
}

// connect dials addr with mTLS and checks an echo; a refusal by either side
// is returned.
func connect(ctx context.Context, addr string, cfg trust.TLSConfig) error {
	conf, err := trust.ClientTLSConfig(cfg)
	if err != nil {
		return err
	}
	d := tls.Dialer{Config: conf}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	msg := []byte("hello from a.test")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return errors.New("echo mismatch")
	}
	return nil
}
