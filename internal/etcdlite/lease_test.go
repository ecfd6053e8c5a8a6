package etcdlite

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// waitGone polls until key is absent.
func waitGone(t *testing.T, cli *Client, key string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		resp, err := cli.Get(testCtx(t, 5*time.Second), key)
		if err == nil && len(resp.Kvs) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s still there after %v (last error %v)", key, within, err)
		}
		time.Sleep(50 * time.Millisecond) // etcd's lessor expires the lease; nothing to wait on
	}
}

// A kept-alive lease outlives its TTL several times over; once its
// keepalives stop it expires within about a TTL, taking its key, and
// TimeToLive says so; a revoked lease's keepalive channel closes at once.
func TestLeaseKeepAliveAndExpiry(t *testing.T) {
	e := startEtcd(t)
	cli := e.lite()
	ctx := testCtx(t, 2*time.Minute)
	const ttl = 2 // seconds; etcd's minimum with its default election timeout
	grant, err := cli.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if grant.TTL < ttl {
		t.Fatalf("granted TTL %d, want at least %d", grant.TTL, ttl)
	}
	if _, err := cli.Put(ctx, "/lease/k", "v", WithLease(grant.ID)); err != nil {
		t.Fatal(err)
	}
	kctx, stop := context.WithCancel(ctx)
	ka, err := cli.KeepAlive(kctx, grant.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Three TTLs: the key must stay, the answers keep coming.
	answers := 0
	hold := time.After(3 * ttl * time.Second)
holding:
	for {
		select {
		case resp, ok := <-ka:
			if !ok {
				t.Fatalf("keepalive channel closed after %d answers", answers)
			}
			if resp.ID != grant.ID || resp.TTL <= 0 {
				t.Fatalf("keepalive answer %+v for lease %x", resp, grant.ID)
			}
			answers++
		case <-hold:
			break holding
		}
	}
	// About one keepalive per TTL/3, and the first at once.
	if answers < 5 {
		t.Errorf("%d keepalive answers in %ds, want at least 5", answers, 3*ttl)
	}
	if resp, err := cli.Get(ctx, "/lease/k"); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("key of the kept-alive lease: %v, %v", resp, err)
	}
	stop()
	for range ka { // closes with the context
	}
	took := waitGone(t, cli, "/lease/k", 15*time.Second)
	t.Logf("key gone %v after the keepalives stopped (TTL %ds)", took.Round(10*time.Millisecond), grant.TTL)
	tl, err := cli.TimeToLive(ctx, grant.ID)
	if err != nil {
		t.Fatal(err)
	}
	if tl.TTL != -1 {
		t.Errorf("TimeToLive of the expired lease: TTL %d, want -1", tl.TTL)
	}

	// Revoked: the key goes at once, and a keepalive's channel closes on
	// etcd's answer that the lease is gone.
	grant, err = cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/lease/r", "v", WithLease(grant.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(ctx, grant.ID); err != nil {
		t.Fatal(err)
	}
	if resp, err := cli.Get(ctx, "/lease/r"); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("key of the revoked lease: %v, %v", resp, err)
	}
	ka, err = cli.KeepAlive(ctx, grant.ID)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case resp, ok := <-ka:
		if ok {
			t.Errorf("keepalive of a revoked lease answered %+v, want the channel closed", resp)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("keepalive channel of a revoked lease still open after 30s")
	}
	if _, err := cli.Revoke(ctx, grant.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Errorf("revoke twice: %v, want ErrLeaseNotFound", err)
	}
}

// Closing the client ends its watches and keepalives.
func TestCloseEndsStreams(t *testing.T) {
	e := startEtcd(t)
	cli := e.lite()
	ctx := testCtx(t, time.Minute)
	grant, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	ka, err := cli.KeepAlive(ctx, grant.ID)
	if err != nil {
		t.Fatal(err)
	}
	<-ka
	wch := cli.Watch(ctx, "/", WithPrefix())
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	for name, closed := range map[string]func() bool{
		"keepalive": func() bool { _, ok := <-ka; return !ok },
		"watch":     func() bool { _, ok := <-wch; return !ok },
	} {
		done := make(chan bool, 1)
		go func() {
			for !closed() {
			}
			done <- true
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("%s channel still open 30s after Close", name)
		}
	}
}
