package trust

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// memBundles is the trust/ keyspace in memory, with PublishBundle's
// compare-and-swap on the sequence and a notification per publication.
type memBundles struct {
	mu        sync.Mutex
	bundles   map[string]*straitv1.TrustBundle
	published chan *straitv1.TrustBundle
}

func newMemBundles() *memBundles {
	return &memBundles{bundles: map[string]*straitv1.TrustBundle{}, published: make(chan *straitv1.TrustBundle, 16)}
}

func (m *memBundles) PublishBundle(_ context.Context, b *straitv1.TrustBundle) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.bundles[b.GetTrustDomain()]; ok && b.GetSequence() <= cur.GetSequence() {
		return fmt.Errorf("sequence %d not above %d", b.GetSequence(), cur.GetSequence())
	}
	m.bundles[b.GetTrustDomain()] = b
	m.published <- b
	return nil
}

func (m *memBundles) ListBundles(context.Context) ([]*straitv1.TrustBundle, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*straitv1.TrustBundle
	for _, b := range m.bundles {
		out = append(out, b)
	}
	return out, nil
}

func nextPublished(t *testing.T, m *memBundles) *straitv1.TrustBundle {
	t.Helper()
	select {
	case b := <-m.published:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("nothing published")
		return nil
	}
}

func TestLocalBundlePublisherFollowsRootRotation(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now().Truncate(time.Second))
	ca := newTestCA(t, "a.test", clock.Now)
	etcd := newMemBundles()
	pub, err := NewLocalBundlePublisher(LocalBundlePublisherConfig{
		TrustDomain: ca.TrustDomain(), Source: ca, Publisher: etcd, Lister: etcd, Clock: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pub.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	}()

	// Sequences start at the clock's Unix milliseconds (NextSequence).
	first := nextPublished(t, etcd)
	if first.GetSequence() != uint64(clock.Now().UnixMilli()) || len(first.GetX509Authorities()) != 1 {
		t.Fatalf("at start: %v", first)
	}
	old := ca.ActiveRoot()
	issue(t, ca, "spiffe://a.test/x")
	if _, err := ca.PrepareRoot(); err != nil {
		t.Fatal(err)
	}
	second := nextPublished(t, etcd)
	if second.GetSequence() != first.GetSequence()+1 || len(second.GetX509Authorities()) != 2 {
		t.Fatalf("after PrepareRoot at the same time: %v", second)
	}
	if err := ca.ActivateRoot(); err != nil { // the bundle does not change
		t.Fatal(err)
	}
	clock.Advance(DefaultSVIDTTL + time.Second) // also fires the re-check ticker
	if err := ca.DropRoot(old); err != nil {
		t.Fatal(err)
	}
	b := nextPublished(t, etcd)
	if b.GetSequence() != uint64(clock.Now().UnixMilli()) || len(b.GetX509Authorities()) != 1 {
		t.Fatalf("after DropRoot: %v", b)
	}
	select {
	case extra := <-etcd.published:
		t.Fatalf("published an unchanged bundle: %v", extra)
	default:
	}
	// A second publisher (a restart) finds the bundle current.
	again, err := NewLocalBundlePublisher(LocalBundlePublisherConfig{TrustDomain: ca.TrustDomain(), Source: ca, Publisher: etcd, Lister: etcd})
	if err != nil {
		t.Fatal(err)
	}
	if wrote, err := again.PublishOnce(ctx); err != nil || wrote {
		t.Fatalf("restart republished: %v %v", wrote, err)
	}
}

func TestNextBundleRecordSequence(t *testing.T) {
	ca := newTestCA(t, "a.test", nil)
	other := newTestCA(t, "a.test", nil)
	at := func(ms int64) time.Time { return time.UnixMilli(ms) }
	for _, tc := range []struct {
		name   string
		stored *straitv1.TrustBundle
		min    uint64
		now    time.Time
		want   uint64
	}{
		{"nothing stored: the clock", nil, 0, at(1_700_000_000_000), 1_700_000_000_000},
		{"nothing stored, clock before 1970", nil, 0, at(-5), 1},
		{"stored ahead of the clock", other.TrustBundle(9, 0), 4, at(3), 10},
		{"minimum ahead", other.TrustBundle(9, 0), 30, at(3), 30},
		{"clock ahead", other.TrustBundle(9, 0), 30, at(1_700_000_000_000), 1_700_000_000_000},
	} {
		rec, ok := NextBundleRecord(ca.Bundle(), tc.stored, tc.min, 0, tc.now)
		if !ok || rec.GetSequence() != tc.want {
			t.Errorf("%s: got %d (%v), want %d", tc.name, rec.GetSequence(), ok, tc.want)
		}
	}
	if _, ok := NextBundleRecord(ca.Bundle(), ca.TrustBundle(9, 0), 0, 0, time.Now()); ok {
		t.Fatal("same authorities republished")
	}
}
