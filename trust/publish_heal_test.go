package trust

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/federation/embedded"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// healDeadline is how soon a publisher must repair its key.
const healDeadline = 5 * time.Second

// startEtcd runs a real embedded etcd until the test ends and returns a
// client of it.
func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{Members: []embedded.Member{{Dir: t.TempDir()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	cli, err := federation.Dial(federation.ClientConfig{Endpoints: srv.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// runPublisher runs a publisher of ca's bundle on the real store until the
// returned stop is called (or the test ends).
func runPublisher(t *testing.T, ca *CA, store *federation.Store) (stop func()) {
	t.Helper()
	pub, err := NewLocalBundlePublisher(LocalBundlePublisherConfig{
		TrustDomain: ca.TrustDomain(), Source: ca, Publisher: store,
		Key: store.BundleKey(ca.TrustDomain().Name()), Interval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pub.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// awaitBundle polls the key until it holds a valid record of ca's bundle
// with a sequence above after, and returns it.
func awaitBundle(t *testing.T, cli *clientv3.Client, key string, ca *CA, after uint64) *straitv1.TrustBundle {
	t.Helper()
	deadline := time.Now().Add(healDeadline)
	var last string
	for time.Now().Before(deadline) {
		resp, err := cli.Get(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case len(resp.Kvs) == 0:
			last = "absent"
		default:
			rec, b, err := UnmarshalBundle(resp.Kvs[0].Value)
			switch {
			case err != nil:
				last = err.Error()
			case !sameAuthorities(b, ca.Bundle()):
				last = "other authorities"
			case rec.GetSequence() <= after:
				last = "sequence not above the last one"
			default:
				return rec
			}
		}
		time.Sleep(20 * time.Millisecond) // polling etcd with a deadline
	}
	t.Fatalf("%s not repaired within %s: %s", key, healDeadline, last)
	return nil
}

// TestPublisherRepairsItsKey damages a.test's bundle key in a real etcd in
// every way the issue found, and checks that the running publisher repairs
// it within healDeadline with a sequence that a peer, which applied every
// earlier publication, accepts. On the old code a deletion was republished
// as sequence 1 (refused by the peer as stale) and junk stayed.
func TestPublisherRepairsItsKey(t *testing.T) {
	cli := startEtcd(t)
	store := federation.NewStore(cli, federation.Keyspace{})
	caA, caB := newTestCA(t, "a.test", nil), newTestCA(t, "b.test", nil)
	key := federation.Keyspace{}.Bundle("a.test")
	peer := newStore(t, caB, nil) // b.test's view of a.test
	runPublisher(t, caA, store)

	rec := awaitBundle(t, cli, key, caA, 0)
	if err := peer.Apply(rec); err != nil {
		t.Fatal(err)
	}
	older, err := proto.Marshal(caA.TrustBundle(1, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		damage func(ctx context.Context) error
	}{
		{"deleted", func(ctx context.Context) error { _, err := cli.Delete(ctx, key); return err }},
		{"junk", func(ctx context.Context) error { _, err := cli.Put(ctx, key, "\xff\x00junk"); return err }},
		{"deleted again", func(ctx context.Context) error { _, err := cli.Delete(ctx, key); return err }},
		{"older record", func(ctx context.Context) error { _, err := cli.Put(ctx, key, string(older)); return err }},
		{"empty", func(ctx context.Context) error { _, err := cli.Put(ctx, key, ""); return err }},
	} {
		if err := tc.damage(context.Background()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		next := awaitBundle(t, cli, key, caA, rec.GetSequence())
		if err := peer.Apply(next); err != nil {
			t.Fatalf("%s: the peer refused the repaired bundle: %v", tc.name, err)
		}
		t.Logf("%s: repaired in %s, sequence %d -> %d", tc.name, time.Since(start).Round(time.Millisecond), rec.GetSequence(), next.GetSequence())
		rec = next
	}
}

// TestRestartedPublisherAfterDeletion stops the publisher, deletes its key
// and starts a new publisher, which remembers nothing: its sequence must
// still be above the last one the peer applied (old code: 1, refused).
func TestRestartedPublisherAfterDeletion(t *testing.T) {
	cli := startEtcd(t)
	store := federation.NewStore(cli, federation.Keyspace{})
	caA, caB := newTestCA(t, "a.test", nil), newTestCA(t, "b.test", nil)
	key := federation.Keyspace{}.Bundle("a.test")
	peer := newStore(t, caB, nil)

	stop := runPublisher(t, caA, store)
	rec := awaitBundle(t, cli, key, caA, 0)
	if err := peer.Apply(rec); err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := cli.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if err := peer.Sync(nil); err != nil { // the peer saw the deletion
		t.Fatal(err)
	}
	runPublisher(t, caA, store)
	next := awaitBundle(t, cli, key, caA, 0)
	if err := peer.Apply(next); err != nil {
		t.Fatalf("the peer refused the restarted publisher's bundle (sequence %d after %d): %v", next.GetSequence(), rec.GetSequence(), err)
	}
	t.Logf("sequence %d before the deletion, %d after the restart", rec.GetSequence(), next.GetSequence())
}
