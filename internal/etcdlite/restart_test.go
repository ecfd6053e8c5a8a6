package etcdlite

import (
	"context"
	"errors"
	"testing"
	"time"
)

// After a SIGKILL of the etcd member: an open watch tells that it failed
// and closes (federation resumes it from its revision); calls wait for the
// member and then succeed on the same client; a watch resumed from the
// revision after the last event delivered gets what was written after the
// restart and nothing twice; a keepalive reopens its stream and keeps the
// lease, whose deadline the restart did not pass.
func TestReconnectAfterMemberRestart(t *testing.T) {
	e := startEtcd(t)
	cli := e.lite()
	ctx := testCtx(t, 3*time.Minute)
	put, err := cli.Put(ctx, "/r/before", "1")
	if err != nil {
		t.Fatal(err)
	}
	grant, err := cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	ka, err := cli.KeepAlive(ctx, grant.ID)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ka:
	case <-time.After(30 * time.Second):
		t.Fatal("no first keepalive answer within 30s")
	}
	wch := cli.Watch(WithRequireLeader(ctx), "/r/", WithPrefix(), WithRev(put.Header.Revision))
	last := watchEvents(t, wch, 1)[0].Kv.ModRevision

	e.kill()
	select {
	case resp, ok := <-wch:
		if ok && resp.Err() == nil {
			t.Fatalf("watch delivered %+v after the member died, want an error", resp)
		}
		if ok {
			t.Logf("watch ended: %v", resp.Err())
			for range wch {
			}
		}
	case <-time.After(30 * time.Second):
		t.Fatal("watch still open 30s after the member died")
	}
	// While the member is down, a call waits for it until its context ends.
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = cli.Get(short, "/r/before")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("read while the member is down: %v, want context.DeadlineExceeded", err)
	}

	e.start()
	restarted := time.Now()
	if _, err := cli.Put(ctx, "/r/after", "2"); err != nil {
		t.Fatalf("put after the restart: %v", err)
	}
	wch = cli.Watch(WithRequireLeader(ctx), "/r/", WithPrefix(), WithRev(last+1))
	evs := watchEvents(t, wch, 1)
	if string(evs[0].Kv.Key) != "/r/after" {
		t.Fatalf("resumed watch: %s, want the put of /r/after only", describe(evs))
	}
	select {
	case resp := <-wch:
		t.Fatalf("resumed watch delivered more: %+v", resp)
	default:
	}
	// A keepalive answer after the restart: the stream came back.
	deadline := time.After(30 * time.Second)
	for {
		select {
		case resp, ok := <-ka:
			if !ok {
				t.Fatal("keepalive channel closed across the restart")
			}
			if time.Now().After(restarted) {
				if resp.TTL <= 0 {
					t.Fatalf("keepalive answer %+v after the restart", resp)
				}
				tl, err := cli.TimeToLive(ctx, grant.ID)
				if err != nil || tl.TTL <= 0 {
					t.Fatalf("lease after the restart: %+v, %v", tl, err)
				}
				return
			}
		case <-deadline:
			t.Fatal("no keepalive answer within 30s of the restart")
		}
	}
}

// With several endpoints, calls go to one that answers: the first endpoint
// here refuses connections.
func TestEndpointDown(t *testing.T) {
	e := startEtcd(t)
	cli := e.lite("http://" + freeAddr(t))
	ctx := testCtx(t, time.Minute)
	for i := range 5 {
		if _, err := cli.Put(ctx, "/e", "v"); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
}
