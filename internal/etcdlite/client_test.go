package etcdlite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestParseEndpoints(t *testing.T) {
	for _, tt := range []struct {
		eps     []string
		addrs   []string
		secure  bool
		wantErr string
	}{
		{eps: []string{"http://127.0.0.1:2379", "http://etcd-1:2379"}, addrs: []string{"127.0.0.1:2379", "etcd-1:2379"}},
		{eps: []string{"https://etcd:2379"}, addrs: []string{"etcd:2379"}, secure: true},
		{eps: []string{"unix:///run/etcd.sock"}, addrs: []string{"unix:/run/etcd.sock"}},
		{eps: []string{"unixs://etcd.sock"}, addrs: []string{"unix:etcd.sock"}, secure: true},
		{eps: nil, wantErr: "no endpoints"},
		{eps: []string{"ftp://etcd:21"}, wantErr: "scheme must be"},
		{eps: []string{"http://"}, wantErr: "no host"},
		{eps: []string{"http://a:2379", "https://b:2379"}, wantErr: "mix plain and TLS"},
	} {
		addrs, secure, err := parseEndpoints(tt.eps)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%v: error %v, want one about %q", tt.eps, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tt.eps, err)
			continue
		}
		var got []string
		for _, a := range addrs {
			got = append(got, a.Addr)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.addrs) || secure != tt.secure {
			t.Errorf("%v: %v secure %v, want %v secure %v", tt.eps, got, secure, tt.addrs, tt.secure)
		}
	}
}

func TestGetPrefixRangeEnd(t *testing.T) {
	for in, want := range map[string]string{"/a/": "/a0", "a\xff": "b", "\xff\xff": "\x00", "": "\x00"} {
		if got := GetPrefixRangeEnd(in); got != want {
			t.Errorf("GetPrefixRangeEnd(%q) = %q, want %q", in, got, want)
		}
		if got := clientv3.GetPrefixRangeEnd(in); got != want {
			t.Errorf("clientv3.GetPrefixRangeEnd(%q) = %q: the table is wrong", in, got)
		}
	}
}

// A listing in pages at the revision of its first page, as federation's
// cache lists: every key once, in order, none written after the first page.
func TestListPages(t *testing.T) {
	e := startEtcd(t)
	ref, cli := e.clientv3(), e.lite()
	ctx := testCtx(t, time.Minute)
	for i := range 25 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/p/%02d", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ref.Put(ctx, "/q", "outside the prefix"); err != nil {
		t.Fatal(err)
	}
	end := GetPrefixRangeEnd("/p/")
	var keys []string
	from, rev, pages := "/p/", int64(0), 0
	for {
		opts := []OpOption{WithRange(end), WithLimit(10)}
		if rev != 0 {
			opts = append(opts, WithRev(rev))
		}
		resp, err := cli.Get(ctx, from, opts...)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if rev == 0 {
			rev = resp.Header.Revision
			// Written after the first page: not in this listing.
			if _, err := ref.Put(ctx, "/p/99", "late"); err != nil {
				t.Fatal(err)
			}
			if _, err := ref.Delete(ctx, "/p/05"); err != nil {
				t.Fatal(err)
			}
		}
		for _, kv := range resp.Kvs {
			keys = append(keys, string(kv.Key))
		}
		if !resp.More {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	var want []string
	for i := range 25 {
		want = append(want, fmt.Sprintf("/p/%02d", i))
	}
	if fmt.Sprint(keys) != fmt.Sprint(want) || pages != 3 {
		t.Errorf("listed %d pages: %v\nwant 3 pages: %v", pages, keys, want)
	}
	// Now, and counted: the late key is in, the deleted one out.
	resp, err := cli.Get(ctx, "/p/", WithPrefix(), WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 25 || len(resp.Kvs) != 0 {
		t.Errorf("count %d with %d keys, want 25 and none", resp.Count, len(resp.Kvs))
	}
	got, err := cli.Get(ctx, "/p/99")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "late" {
		t.Errorf("Get /p/99 = %v, %v", got, err)
	}
}

// Transactions as the registrar (puts under a lease, deletes) and the
// store (compare the last write's revision, then put) run them.
func TestTxn(t *testing.T) {
	e := startEtcd(t)
	ref, cli := e.clientv3(), e.lite()
	ctx := testCtx(t, time.Minute)
	put, err := cli.Put(ctx, "/k", "v1")
	if err != nil {
		t.Fatal(err)
	}
	rev := put.Header.Revision
	for _, tt := range []struct {
		rev       int64
		succeeded bool
		want      string
	}{
		{rev: rev - 1, succeeded: false, want: "v1"},
		{rev: rev, succeeded: true, want: "v2"},
		{rev: rev, succeeded: false, want: "v2"}, // the write moved it
	} {
		resp, err := cli.Txn(ctx).If(Compare(ModRevision("/k"), "=", tt.rev)).Then(OpPut("/k", "v2")).Else(OpGet("/k")).Commit()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ref.Get(ctx, "/k")
		if err != nil {
			t.Fatal(err)
		}
		if resp.Succeeded != tt.succeeded || string(got.Kvs[0].Value) != tt.want {
			t.Errorf("txn if mod revision = %d: succeeded %v, value %q; want %v, %q", tt.rev, resp.Succeeded, got.Kvs[0].Value, tt.succeeded, tt.want)
		}
	}
	// Absent key: its mod revision is 0.
	resp, err := cli.Txn(ctx).If(Compare(ModRevision("/new"), "=", 0)).Then(OpPut("/new", "x")).Commit()
	if err != nil || !resp.Succeeded {
		t.Fatalf("create if absent: %v, %v", resp, err)
	}
	grant, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Txn(ctx).Then(OpPut("/l/a", "1", WithLease(grant.ID)), OpPut("/l/b", "2", WithLease(grant.ID))).Commit(); err != nil {
		t.Fatal(err)
	}
	ttl, err := ref.TimeToLive(ctx, clientv3.LeaseID(grant.ID), clientv3.WithAttachedKeys())
	if err != nil || len(ttl.Keys) != 2 {
		t.Fatalf("lease %x keys %v (%v), want /l/a and /l/b", grant.ID, ttl, err)
	}
	if _, err := cli.Txn(ctx).Then(OpDelete("/l/a"), OpDelete("/l/b")).Commit(); err != nil {
		t.Fatal(err)
	}
	if got, err := ref.Get(ctx, "/l/", clientv3.WithPrefix()); err != nil || len(got.Kvs) != 0 {
		t.Errorf("after the deletes: %v, %v", got, err)
	}
	// A put under a lease that is gone fails with ErrLeaseNotFound, which
	// the registrar branches on.
	if _, err := cli.Revoke(ctx, grant.ID); err != nil {
		t.Fatal(err)
	}
	_, err = cli.Txn(ctx).Then(OpPut("/l/a", "1", WithLease(grant.ID))).Commit()
	if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Errorf("put under a revoked lease: %v, want ErrLeaseNotFound", err)
	}
}

// watchEvents collects n events from wch, failing on an error response.
func watchEvents(t *testing.T, wch WatchChan, n int) []*Event {
	t.Helper()
	var evs []*Event
	timeout := time.After(30 * time.Second)
	for len(evs) < n {
		select {
		case resp, ok := <-wch:
			if !ok {
				t.Fatalf("watch closed after %d of %d events", len(evs), n)
			}
			if err := resp.Err(); err != nil {
				t.Fatalf("watch failed after %d of %d events: %v", len(evs), n, err)
			}
			evs = append(evs, resp.Events...)
		case <-timeout:
			t.Fatalf("%d of %d events within 30s", len(evs), n)
		}
	}
	return evs
}

func describe(evs []*Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "%v %s=%s@%d ", ev.Type, ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
	}
	return b.String()
}

// A watch from a revision delivers every change since, in order; a watch
// that resumes from the revision after the last event it delivered misses
// none and repeats none; a progress request is answered with a progress
// notification at the latest revision.
func TestWatchResume(t *testing.T) {
	e := startEtcd(t)
	ref, cli := e.clientv3(), e.lite()
	ctx := testCtx(t, time.Minute)
	first, err := ref.Put(ctx, "/w/a", "1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ref.Put(ctx, "/x", "outside"); err != nil {
		t.Fatal(err)
	}
	if _, err := ref.Delete(ctx, "/w/a"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(WithRequireLeader(ctx))
	wch := cli.Watch(wctx, "/w/", WithPrefix(), WithRev(first.Header.Revision))
	evs := watchEvents(t, wch, 2)
	if evs[0].Type != mvccpb.PUT || string(evs[0].Kv.Key) != "/w/a" || evs[1].Type != EventTypeDelete {
		t.Fatalf("events %s, want the put and the delete of /w/a", describe(evs))
	}
	last := evs[1].Kv.ModRevision
	cancel()
	for range wch { // closes once the context ends
	}
	for i := range 3 {
		if _, err := ref.Put(ctx, fmt.Sprintf("/w/%d", i), "missed"); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel = context.WithCancel(WithRequireLeader(ctx))
	defer cancel()
	wch = cli.Watch(wctx, "/w/", WithPrefix(), WithRev(last+1))
	evs = watchEvents(t, wch, 3)
	for i, ev := range evs {
		if string(ev.Kv.Key) != fmt.Sprintf("/w/%d", i) || ev.Kv.ModRevision != last+1+int64(i) {
			t.Fatalf("resumed events %s, want /w/0../w/2 at %d..%d", describe(evs), last+1, last+3)
		}
	}
	now, err := ref.Put(ctx, "/x", "moves the revision")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	for {
		if err := cli.RequestProgress(wctx); err != nil {
			t.Fatal(err)
		}
		select {
		case resp := <-wch:
			if !resp.IsProgressNotify() || resp.Header.Revision < now.Header.Revision {
				t.Fatalf("response %+v, want a progress notification at %d", resp, now.Header.Revision)
			}
			return
		case <-deadline:
			t.Fatal("no progress notification within 30s")
		case <-time.After(time.Second): // a request may reach the stream before the watch is synced
		}
	}
}

// A watch or a read at a compacted revision fails with ErrCompacted (the
// cache then lists again); the watch's channel closes after telling.
func TestCompacted(t *testing.T) {
	e := startEtcd(t)
	ref, cli := e.clientv3(), e.lite()
	ctx := testCtx(t, time.Minute)
	old, err := ref.Put(ctx, "/c/a", "1")
	if err != nil {
		t.Fatal(err)
	}
	cur, err := ref.Put(ctx, "/c/a", "2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ref.Compact(ctx, cur.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Get(ctx, "/c/", WithPrefix(), WithRev(old.Header.Revision)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("read at a compacted revision: %v, want ErrCompacted", err)
	}
	wch := cli.Watch(WithRequireLeader(ctx), "/c/", WithPrefix(), WithRev(old.Header.Revision))
	select {
	case resp, ok := <-wch:
		if !ok {
			t.Fatal("watch closed without a response")
		}
		if resp.CompactRevision != cur.Header.Revision || !errors.Is(resp.Err(), rpctypes.ErrCompacted) || !resp.Canceled {
			t.Errorf("response compact revision %d, canceled %v, err %v; want %d, true, ErrCompacted",
				resp.CompactRevision, resp.Canceled, resp.Err(), cur.Header.Revision)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no response within 30s")
	}
	select {
	case resp, ok := <-wch:
		if ok {
			t.Errorf("watch delivered %+v after ErrCompacted, want it closed", resp)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("watch still open 30s after ErrCompacted")
	}
}
