package spiresync

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// fakeSPIRE serves the bundle API of a SPIRE server from memory.
type fakeSPIRE struct {
	bundlev1.UnimplementedBundleServer

	mu        sync.Mutex
	own       *types.Bundle
	federated map[string]*types.Bundle
	sets      int // BatchSetFederatedBundle calls
}

func (f *fakeSPIRE) GetBundle(context.Context, *bundlev1.GetBundleRequest) (*types.Bundle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return proto.Clone(f.own).(*types.Bundle), nil
}

func (f *fakeSPIRE) BatchSetFederatedBundle(_ context.Context, req *bundlev1.BatchSetFederatedBundleRequest) (*bundlev1.BatchSetFederatedBundleResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets++
	resp := &bundlev1.BatchSetFederatedBundleResponse{}
	for _, b := range req.GetBundle() {
		f.federated[b.GetTrustDomain()] = b
		resp.Results = append(resp.Results, &bundlev1.BatchSetFederatedBundleResponse_Result{Status: &types.Status{}, Bundle: b})
	}
	return resp, nil
}

func (f *fakeSPIRE) setOwn(b *types.Bundle) {
	f.mu.Lock()
	f.own = b
	f.mu.Unlock()
}

func (f *fakeSPIRE) snapshot() (sets int, federated map[string]*types.Bundle) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]*types.Bundle{}
	for k, v := range f.federated {
		out[k] = v
	}
	return f.sets, out
}

// memEtcd is the trust/ keyspace in memory with PublishBundle's
// compare-and-swap on the sequence.
type memEtcd struct {
	mu        sync.Mutex
	bundles   map[string]*straitv1.TrustBundle
	publishes int
}

var errStale = errors.New("stale")

func (m *memEtcd) PublishBundle(_ context.Context, b *straitv1.TrustBundle) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.bundles[b.GetTrustDomain()]; ok && b.GetSequence() <= cur.GetSequence() {
		return fmt.Errorf("sequence %d not above %d: %w", b.GetSequence(), cur.GetSequence(), errStale)
	}
	m.bundles[b.GetTrustDomain()] = b
	m.publishes++
	return nil
}

func (m *memEtcd) ListBundles(context.Context) ([]*straitv1.TrustBundle, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*straitv1.TrustBundle
	for _, b := range m.bundles {
		out = append(out, b)
	}
	return out, nil
}

func (m *memEtcd) put(b *straitv1.TrustBundle) {
	m.mu.Lock()
	m.bundles[b.GetTrustDomain()] = b
	m.mu.Unlock()
}

func (m *memEtcd) get(td string) *straitv1.TrustBundle {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bundles[td]
}

func selfSigned(t *testing.T, cn string, isCA bool) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func spireBundle(td string, seq uint64, certs ...*x509.Certificate) *types.Bundle {
	b := &types.Bundle{TrustDomain: td, SequenceNumber: seq, RefreshHint: 30}
	for _, c := range certs {
		b.X509Authorities = append(b.X509Authorities, &types.X509Certificate{Asn1: c.Raw})
	}
	return b
}

func record(td string, seq uint64, certs ...*x509.Certificate) *straitv1.TrustBundle {
	r := &straitv1.TrustBundle{TrustDomain: td, Sequence: seq}
	for _, c := range certs {
		r.X509Authorities = append(r.X509Authorities, c.Raw)
	}
	return r
}

// setup runs a fake SPIRE server for a.test over an in-memory listener.
func setup(t *testing.T, own *types.Bundle, federates ...string) (*Syncer, *fakeSPIRE, *memEtcd) {
	t.Helper()
	// At the Unix epoch the time floor of sequences is zero: the tests
	// see the sequences SPIRE and the stored records give.
	return setupAt(t, clockwork.NewFakeClockAt(time.UnixMilli(0)), own, federates...)
}

// setupAt is setup with the clock of the Syncer.
func setupAt(t *testing.T, clock clockwork.Clock, own *types.Bundle, federates ...string) (*Syncer, *fakeSPIRE, *memEtcd) {
	t.Helper()
	fake := &fakeSPIRE{own: own, federated: map[string]*types.Bundle{}}
	ln := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	bundlev1.RegisterBundleServer(srv, fake)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	etcd := &memEtcd{bundles: map[string]*straitv1.TrustBundle{}}
	var tds []spiffeid.TrustDomain
	for _, f := range federates {
		tds = append(tds, spiffeid.RequireTrustDomainFromString(f))
	}
	s, err := New(Config{
		Conn: conn, TrustDomain: spiffeid.RequireTrustDomainFromString("a.test"),
		Publisher: etcd, Lister: etcd, Federates: tds, Clock: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, fake, etcd
}

func TestPushPublishesOnlyChanges(t *testing.T) {
	ctx := context.Background()
	ca1, ca2 := selfSigned(t, "a1", true), selfSigned(t, "a2", true)
	s, fake, etcd := setup(t, spireBundle("a.test", 1, ca1))
	for range 3 {
		if err := s.SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := etcd.get("a.test"); got.GetSequence() != 1 || etcd.publishes != 1 || got.GetRefreshHint().AsDuration() != 30*time.Second {
		t.Fatalf("after 3 syncs of one bundle: %d publishes, record %v", etcd.publishes, got)
	}
	// SPIRE prepares a new CA: published with the next sequence.
	fake.setOwn(spireBundle("a.test", 2, ca1, ca2))
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := etcd.get("a.test"); got.GetSequence() != 2 || len(got.GetX509Authorities()) != 2 {
		t.Fatalf("after a new CA: %v", got)
	}
	// A SPIRE redeployed with a fresh datastore restarts its sequence; the
	// published one still goes up.
	etcd.put(record("a.test", 40, ca1, ca2))
	fake.setOwn(spireBundle("a.test", 1, ca2))
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := etcd.get("a.test"); got.GetSequence() != 41 || len(got.GetX509Authorities()) != 1 {
		t.Fatalf("after a SPIRE reset: %v", got)
	}
}

func TestPullWritesValidFederatedBundles(t *testing.T) {
	ctx := context.Background()
	s, fake, etcd := setup(t, spireBundle("a.test", 1, selfSigned(t, "a", true)), "b.test", "c.test")
	b1, b2 := selfSigned(t, "b1", true), selfSigned(t, "b2", true)
	etcd.put(record("b.test", 5, b1))
	etcd.put(record("c.test", 1, selfSigned(t, "leaf", false))) // not a CA
	etcd.put(record("d.test", 1, selfSigned(t, "d", true)))     // not federated
	err := s.SyncOnce(ctx)
	if !errors.Is(err, trust.ErrNotCA) {
		t.Fatalf("got %v, want ErrNotCA for c.test", err)
	}
	sets, fed := fake.snapshot()
	if len(fed) != 1 || fed["b.test"].GetSequenceNumber() != 5 || fed["b.test"].GetRefreshHint() != 0 {
		t.Fatalf("federated bundles in SPIRE: %v", fed)
	}
	// Unchanged: nothing written again.
	etcd.put(record("c.test", 2, selfSigned(t, "c", true)))
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	sets2, fed := fake.snapshot()
	if sets2 != sets+1 || len(fed) != 2 {
		t.Fatalf("second sync: %d calls (was %d), bundles %d", sets2, sets, len(fed))
	}
	// A rollback in etcd is refused and SPIRE keeps the newer bundle.
	etcd.put(record("b.test", 4, b2))
	if err := s.SyncOnce(ctx); !errors.Is(err, trust.ErrStaleBundle) {
		t.Fatalf("got %v, want ErrStaleBundle", err)
	}
	_, fed = fake.snapshot()
	if fed["b.test"].GetSequenceNumber() != 5 || len(fed["b.test"].GetX509Authorities()) != 1 ||
		string(fed["b.test"].GetX509Authorities()[0].GetAsn1()) != string(b1.Raw) {
		t.Fatalf("SPIRE's bundle of b.test rolled back: %v", fed["b.test"])
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	s, _, etcd := setup(t, spireBundle("a.test", 1, selfSigned(t, "a", true)))
	clock := clockwork.NewFakeClock()
	s.cfg.Clock = clock
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitCtx, waitCancel := context.WithTimeout(ctx, 10*time.Second)
	defer waitCancel()
	if err := clock.BlockUntilContext(waitCtx, 1); err != nil {
		t.Fatal(err)
	}
	if etcd.get("a.test") == nil {
		t.Fatal("Run did not sync at once")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	_, err := New(Config{Interval: -1})
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	t.Log(err)
}

func (m *memEtcd) delete(td string) {
	m.mu.Lock()
	delete(m.bundles, td)
	m.mu.Unlock()
}

// TestPushAfterDeletionGoesUp deletes the published bundle: the next push,
// by the same Syncer or by a new one (a restart), must carry a sequence
// above the deleted one, which every peer still holds (on the old code both
// republished SPIRE's sequence, refused by peers as stale).
func TestPushAfterDeletionGoesUp(t *testing.T) {
	ctx := context.Background()
	ca := selfSigned(t, "a", true)
	clock := clockwork.NewFakeClockAt(time.UnixMilli(1_700_000_000_000))
	s, _, etcd := setupAt(t, clock, spireBundle("a.test", 3, ca))
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	first := etcd.get("a.test").GetSequence()
	if first != 1_700_000_000_000 {
		t.Fatalf("first sequence %d, want the clock's Unix milliseconds", first)
	}
	etcd.delete("a.test")
	if err := s.SyncOnce(ctx); err != nil { // same millisecond
		t.Fatal(err)
	}
	second := etcd.get("a.test").GetSequence()
	if second <= first {
		t.Fatalf("after a deletion: sequence %d, not above %d", second, first)
	}
	// A restarted sync remembers nothing; its clock has moved on.
	etcd.delete("a.test")
	clock.Advance(time.Second)
	restarted, err := New(Config{
		Conn: s.cfg.Conn, TrustDomain: s.cfg.TrustDomain, Publisher: etcd, Lister: etcd, Clock: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := restarted.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if third := etcd.get("a.test").GetSequence(); third <= second {
		t.Fatalf("after a deletion and a restart: sequence %d, not above %d", third, second)
	}
}
