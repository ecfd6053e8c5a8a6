package federation

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/internal/etcdtest"
)

// waitRegistered fails the test unless r registers within waitTimeout.
func waitRegistered(t *testing.T, r *Registrar) {
	t.Helper()
	select {
	case <-r.Registered():
	case <-time.After(waitTimeout):
		t.Fatal("not registered")
	}
}

// TestRegistrarWritesOnlyChanges: a gateway record is written once and
// then lives on its lease's keepalives alone for several TTLs (no
// heartbeat rewrites, each of which would be a raft entry); a change of its
// content is written once; and when its process dies, the record goes with
// the lease.
func TestRegistrarWritesOnlyChanges(t *testing.T) {
	srv, cli := etcdtest.Start(t, 1)
	ks := Keyspace{}
	key := ks.Gateway("west", "gw-0")
	const ttl = 2 * time.Second
	regCli := etcdtest.NewClient(t, srv.Endpoints()...)
	r, err := NewRegistrar(RegistrarConfig{Client: regCli, TTL: ttl, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	gw := testGateway("west", "gw-0")
	r.Put(key, gw)
	runRegistrar(t, r)
	waitRegistered(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v, %d keys", key, err, len(resp.Kvs))
	}
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)
	events := cli.Watch(ctx, key, clientv3.WithRev(resp.Kvs[0].ModRevision+1))

	// Three TTLs without a write: the old heartbeat (a third of the TTL)
	// rewrote the record about nine times here.
	quiet := time.NewTimer(3 * ttl)
	defer quiet.Stop()
	for waiting := true; waiting; {
		select {
		case wr := <-events:
			for _, ev := range wr.Events {
				t.Errorf("record written again without a change: %s at revision %d", ev.Type, ev.Kv.ModRevision)
			}
			if err := wr.Err(); err != nil {
				t.Fatal(err)
			}
		case <-quiet.C:
			waiting = false
		}
	}
	// TimeToLive truncates the remaining time to whole seconds (etcd's
	// LeaseTimeToLive: int64(Remaining().Seconds())): 0 is a live lease with
	// under a second left (a keepalive a little late under -race); an
	// expired or unknown lease is -1.
	ttlResp, err := cli.TimeToLive(ctx, lease)
	if err != nil || ttlResp.TTL < 0 {
		t.Fatalf("lease %x after 3 TTLs of keepalives alone: TTL %v, %v", lease, ttlResp, err)
	}
	if got, ok := leaseOf(t, cli, key); !ok || got != lease {
		t.Fatalf("record lease = %x (present %v), want %x", got, ok, lease)
	}

	// A change of content is one write.
	moved := testGateway("west", "gw-0")
	moved.Address = "10.0.0.2:4443"
	r.Put(key, moved)
	select {
	case wr := <-events:
		if len(wr.Events) != 1 || wr.Events[0].Type != clientv3.EventTypePut {
			t.Fatalf("after a change: %d events, want one put", len(wr.Events))
		}
	case <-time.After(waitTimeout):
		t.Fatal("changed record not written")
	}

	// The process dies without revoking: the record goes with the lease.
	if err := regCli.Close(); err != nil {
		t.Fatal(err)
	}
	poll(t, "the record withdrawn by lease expiry", func() bool { _, ok := leaseOf(t, cli, key); return !ok })
}

// TestRegistrarBacksOffWhileLeasesAreLost: a registrar whose every new
// lease is lost before it was held for a TTL waits exponentially longer
// before granting the next one, instead of granting and writing
// everything again at once (what amplified an overloaded etcd's load in
// the scale harness).
func TestRegistrarBacksOffWhileLeasesAreLost(t *testing.T) {
	_, cli := etcdtest.Start(t, 1)
	ks := Keyspace{}
	key := ks.Gateway("west", "gw-0")
	const retryMin = 100 * time.Millisecond
	r, err := NewRegistrar(RegistrarConfig{Client: cli, TTL: 5 * time.Second, RetryMin: retryMin,
		RetryMax: 10 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	r.Put(key, testGateway("west", "gw-0"))
	runRegistrar(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const losses = 6
	var prev clientv3.LeaseID
	var revoked time.Time
	for i := 0; i <= losses; i++ {
		var cur clientv3.LeaseID
		poll(t, "registration under a new lease", func() bool {
			got, ok := leaseOf(t, cli, key)
			cur = got
			return ok && got != prev && got == r.LeaseID()
		})
		if i == losses {
			// Attempt 5 of the backoff: a delay in [16, 32) × RetryMin / 2.
			gap := time.Since(revoked)
			t.Logf("registered again %s after loss %d", gap.Round(time.Millisecond), losses)
			if want := retryMin << (losses - 1) / 2; gap < want {
				t.Errorf("registered again %s after loss %d, want at least %s of backoff", gap, losses, want)
			}
			break
		}
		revoked = time.Now()
		if _, err := cli.Revoke(ctx, cur); err != nil {
			t.Fatal(err)
		}
		prev = cur
	}
}

// TestRegistrarKeepsLiveLease: when a registrar's keepalives go unanswered
// for longer than its TTL but its lease still lives (here another client
// renews it, as an overloaded etcd answers some keepalives late), the
// registrar keeps that lease and its records once etcd answers again: no
// new lease, no record written again.
func TestRegistrarKeepsLiveLease(t *testing.T) {
	srv, cli := etcdtest.Start(t, 1)
	ks := Keyspace{}
	key := ks.Gateway("west", "gw-0")
	const ttl = 2 * time.Second
	proxy := newTCPProxy(t, srv.Endpoints()[0])
	r, err := NewRegistrar(RegistrarConfig{Client: dialTest(t, proxy.URL()), TTL: ttl, RetryMin: 50 * time.Millisecond,
		RetryMax: 500 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	r.Put(key, testGateway("west", "gw-0"))
	runRegistrar(t, r)
	waitRegistered(t, r)
	lease, ok := leaseOf(t, cli, key)
	if !ok || lease != r.LeaseID() {
		t.Fatalf("record lease = %x (present %v), want %x", lease, ok, r.LeaseID())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v", key, err)
	}
	modRev := resp.Kvs[0].ModRevision

	// Cut the registrar off from etcd while another client renews its
	// lease, for long enough that the registrar's client gives up waiting
	// for keepalive answers (the TTL, checked every 500ms).
	kctx, kcancel := context.WithCancel(ctx)
	renewed, err := cli.KeepAlive(kctx, lease)
	if err != nil {
		t.Fatal(err)
	}
	proxy.Pause()
	cutOff := time.NewTimer(2*ttl + time.Second)
	for waiting := true; waiting; {
		select {
		case _, ok := <-renewed:
			if !ok {
				t.Fatal("the lease could not be renewed by the other client")
			}
		case <-cutOff.C:
			waiting = false
		}
	}
	proxy.Resume()

	// A record put now lands under the same lease once the registrar is
	// back; the old record was not written again.
	other := ks.Endpoint("west", "shop", "payments", "p1")
	r.Put(other, testEndpoint("west", "shop", "payments", "p1"))
	poll(t, "the new record written", func() bool { _, ok := leaseOf(t, cli, other); return ok })
	if got, _ := leaseOf(t, cli, other); got != lease {
		t.Errorf("new record under lease %x, want the kept lease %x", got, lease)
	}
	resp, err = cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v", key, err)
	}
	if kv := resp.Kvs[0]; clientv3.LeaseID(kv.Lease) != lease || kv.ModRevision != modRev {
		t.Errorf("gateway record: lease %x revision %d, want lease %x revision %d (not written again)",
			kv.Lease, kv.ModRevision, lease, modRev)
	}

	// The registrar's own keepalives hold the lease again: without the
	// other client's, it outlives two TTLs.
	kcancel()
	hold := time.NewTimer(2 * ttl)
	<-hold.C
	if ttlResp, err := cli.TimeToLive(ctx, lease); err != nil || ttlResp.TTL < 0 { // 0: live, under a second left
		t.Fatalf("lease %x after two TTLs on the registrar's keepalives alone: %v, %v", lease, ttlResp, err)
	}
	if got := r.LeaseID(); got != lease {
		t.Errorf("registrar lease = %x, want %x", got, lease)
	}
}
