package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/federation/embedded"
	"github.com/strait-mesh/strait/internal/etcdtest"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

func putRaw(t testing.TB, cli *clientv3.Client, key string, value []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := cli.Put(ctx, key, string(value)); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// TestCacheCompactionWhileDisconnected is T03: the cache's connection is
// cut, many revisions are written and compacted away, and on reconnection
// the cache re-lists, diffs and converges, and records that did not change
// keep their identity throughout.
func TestCacheCompactionWhileDisconnected(t *testing.T) {
	srv, cli := etcdtest.Start(t, 1)
	proxy := newTCPProxy(t, srv.Endpoints()[0])
	cacheCli := dialTest(t, proxy.URL())
	ks := Keyspace{}
	const stable = 20
	for i := range stable {
		putRaw(t, cli, ks.Export("west", "shop", fmt.Sprintf("svc-%d", i)),
			encode(t, testExport("west", "shop", fmt.Sprintf("svc-%d", i), time.Unix(int64(i), 0))))
	}
	putRaw(t, cli, ks.Export("west", "shop", "churn"), encode(t, testExport("west", "shop", "churn", time.Unix(1, 0))))
	putRaw(t, cli, ks.Export("west", "shop", "doomed"), encode(t, testExport("west", "shop", "doomed", time.Unix(1, 0))))
	reg := prometheus.NewRegistry()
	c := startCache(t, CacheConfig{Sources: oneSource(cacheCli), Metrics: reg, PageSize: 7, // several pages
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	before := c.Snapshot()
	identity := map[string]*straitv1.Export{}
	for i := range stable {
		name := fmt.Sprintf("svc-%d", i)
		identity[name] = before.Export("west", ServiceKey{Namespace: "shop", Name: name})
		if identity[name] == nil {
			t.Fatalf("%s missing after sync", name)
		}
	}

	// Every snapshot published from now on must still hold the stable
	// exports, unchanged: no flush-and-reload.
	var blips atomic.Int64
	watchCtx, stopWatch := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			ch := c.Changed()
			s := c.Snapshot()
			for name, e := range identity {
				if s.Export("west", ServiceKey{Namespace: "shop", Name: name}) != e {
					blips.Add(1)
				}
			}
			select {
			case <-ch:
			case <-watchCtx.Done():
				return
			}
		}
	})

	proxy.Pause()
	const revisions = 1000
	churnKey := ks.Export("west", "shop", "churn")
	var last *straitv1.Export
	var writers sync.WaitGroup
	for w := range 8 {
		writers.Go(func() {
			for i := w; i < revisions; i += 8 {
				e := testExport("west", "shop", "churn", time.Unix(1, 0), tcpPort("http", uint32(1000+i)))
				putRaw(t, cli, churnKey, encode(t, e))
			}
		})
	}
	writers.Wait()
	last = testExport("west", "shop", "churn", time.Unix(1, 0), tcpPort("http", 7777))
	putRaw(t, cli, churnKey, encode(t, last))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := cli.Delete(ctx, ks.Export("west", "shop", "doomed")); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Put(ctx, ks.Export("west", "shop", "born"), string(encode(t, testExport("west", "shop", "born", time.Unix(2, 0)))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	proxy.Resume()

	s := waitFor(t, c, "convergence after compaction", func(s *Snapshot) bool {
		return s.Revision() >= resp.Header.Revision
	})
	t.Logf("converged %s after reconnecting", time.Since(resumed).Round(time.Millisecond))
	stopWatch()
	wg.Wait()
	if got := s.Export("west", ServiceKey{Namespace: "shop", Name: "churn"}); got.GetPorts()[0].GetPort() != 7777 {
		t.Errorf("churn port = %d, want 7777", got.GetPorts()[0].GetPort())
	}
	if s.Export("west", ServiceKey{Namespace: "shop", Name: "doomed"}) != nil {
		t.Error("a deleted export survived the re-list")
	}
	if s.Export("west", ServiceKey{Namespace: "shop", Name: "born"}) == nil {
		t.Error("an export created while disconnected is missing")
	}
	for name, e := range identity {
		if s.Export("west", ServiceKey{Namespace: "shop", Name: name}) != e {
			t.Errorf("%s lost its identity", name)
		}
	}
	if n := blips.Load(); n != 0 {
		t.Errorf("%d snapshots lacked an unchanged export", n)
	}
	if v := counterValue(t, reg, "strait_federation_relists_total", nil); v != 2 {
		t.Errorf("relists = %v, want 2 (the first list and one after compaction)", v)
	}
}

// TestCacheSurvivesLeaderKill stops the leader of a 3-member cluster
// without a hand-over (embedded.StopMember: a crash as raft sees it, so
// the survivors hold an election) while a writer churns exports (T01 in
// small): the watch keeps going, every acknowledged export arrives, and
// what the cache publishes never goes backwards (revisions and a counter
// written in order only increase). The SIGKILL of a real etcd process is
// e2e/etcdcluster's TestLeaderSIGKILLUnderExportWrites.
func TestCacheSurvivesLeaderKill(t *testing.T) {
	srv, cli := etcdtest.Start(t, 3)
	ks := Keyspace{}
	putRaw(t, cli, ks.Export("west", "shop", "before"), encode(t, testExport("west", "shop", "before", time.Unix(1, 0))))
	// Clients reach the members through proxies, so that the kill resets
	// their connections at once, as a crash would (etcd's own shutdown
	// waits several seconds for open watch streams).
	var proxies []*tcpProxy
	var urls []string
	for _, ep := range srv.Endpoints() {
		p := newTCPProxy(t, ep)
		proxies = append(proxies, p)
		urls = append(urls, p.URL())
	}
	c := startCache(t, CacheConfig{Sources: oneSource(dialTest(t, urls...)), RetryMin: 20 * time.Millisecond,
		RetryMax: 500 * time.Millisecond, ProgressInterval: 500 * time.Millisecond})

	// The observer checks every snapshot it sees against the last one.
	counterKey := ServiceKey{Namespace: "shop", Name: "counter"}
	counterOf := func(s *Snapshot) uint32 {
		if e := s.Export("west", counterKey); e != nil {
			return e.GetPorts()[0].GetPort()
		}
		return 0
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var regressions atomic.Int64
	wg.Go(func() {
		var lastRev int64
		var lastCounter uint32
		for {
			ch := c.Changed()
			s := c.Snapshot()
			if s.Revision() < lastRev || counterOf(s) < lastCounter {
				regressions.Add(1)
			}
			lastRev, lastCounter = s.Revision(), counterOf(s)
			select {
			case <-ch:
			case <-ctx.Done():
				return
			}
		}
	})
	// The writer writes svc-<i> then counter=i, in order, retrying each
	// write until it is acknowledged.
	writer := dialTest(t, urls...)
	var acked atomic.Int64
	killedAt := make(chan int64, 1)
	wg.Go(func() {
		put := func(key string, value []byte) bool {
			for ctx.Err() == nil {
				wctx, cancel := context.WithTimeout(ctx, time.Second)
				_, err := writer.Put(wctx, key, string(value))
				cancel()
				if err == nil {
					return true
				}
			}
			return false
		}
		for i := int64(1); ; i++ {
			name := fmt.Sprintf("svc-%d", i)
			if !put(ks.Export("west", "shop", name), encode(t, testExport("west", "shop", name, time.Unix(1, 0)))) ||
				!put(ks.Export("west", "shop", "counter"),
					encode(t, testExport("west", "shop", "counter", time.Unix(1, 0), tcpPort("n", uint32(i))))) {
				return
			}
			acked.Store(i)
			select {
			case k := <-killedAt:
				// Keep writing until 20 writes after the kill are acknowledged.
				killedAt <- k
				if i >= k+20 {
					return
				}
			default:
			}
		}
	})
	poll(t, "writes before the kill", func() bool { return acked.Load() >= 10 })

	leader := -1
	for i := range 3 {
		if m := srv.Member(i); m.Server.Leader() == m.Server.MemberID() {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no leader")
	}
	killed := time.Now()
	proxies[leader].Pause()
	if err := srv.StopMember(leader); err != nil {
		t.Logf("stop leader: %v", err)
	}
	killedAt <- acked.Load()
	poll(t, "20 acknowledged writes after the kill", func() bool {
		k := <-killedAt
		killedAt <- k
		return acked.Load() >= k+20
	})
	last := acked.Load()
	t.Logf("20 writes acknowledged %s after the kill", time.Since(killed).Round(time.Millisecond))
	s := waitFor(t, c, "every acknowledged write", func(s *Snapshot) bool { return int64(counterOf(s)) >= last })
	t.Logf("%d acknowledged writes visible %s after the leader was killed", last, time.Since(killed).Round(time.Millisecond))
	stop()
	wg.Wait()
	for i := int64(1); i <= last; i++ {
		if s.Export("west", ServiceKey{Namespace: "shop", Name: fmt.Sprintf("svc-%d", i)}) == nil {
			t.Errorf("acknowledged export svc-%d is missing", i)
		}
	}
	if s.Export("west", ServiceKey{Namespace: "shop", Name: "before"}) == nil {
		t.Error("an export written before the kill is gone")
	}
	if n := regressions.Load(); n != 0 {
		t.Errorf("%d snapshots went backwards", n)
	}
}

// TestCacheStaticStability is T02: with etcd fully stopped the cache keeps
// serving its snapshot, and a cache started during the outage serves the
// snapshot file.
func TestCacheStaticStability(t *testing.T) {
	srv, cli := etcdtest.Start(t, 1)
	ks := Keyspace{}
	path := filepath.Join(t.TempDir(), "state", "snapshot.json")
	putRaw(t, cli, ks.Export("west", "shop", "payments"), encode(t, testExport("west", "shop", "payments", time.Unix(1, 0))))
	putRaw(t, cli, ks.Gateway("west", "gw-0"), encode(t, testGateway("west", "gw-0")))
	// The cache reaches etcd through a proxy: cutting it first makes etcd's
	// own shutdown quick (it waits for open watch streams otherwise).
	proxy := newTCPProxy(t, srv.Endpoints()[0])
	cacheCli := dialTest(t, proxy.URL())
	reg := prometheus.NewRegistry()
	c := startCache(t, CacheConfig{Sources: oneSource(cacheCli), SnapshotPath: path, PersistDelay: 20 * time.Millisecond,
		Metrics: reg, ProgressInterval: 200 * time.Millisecond, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	key := ServiceKey{Namespace: "shop", Name: "payments"}
	want := c.Snapshot()
	poll(t, "snapshot file written", func() bool {
		_, err := os.Stat(path)
		return err == nil
	})

	proxy.Pause()
	if err := srv.Close(); err != nil {
		t.Logf("close etcd: %v", err)
	}
	poll(t, "staleness to grow", func() bool {
		return counterValue(t, reg, "strait_federation_config_staleness_seconds", nil) > 1
	})
	s := c.Snapshot()
	if svc, ok := s.Service(key); !ok || len(svc.Clusters) != 1 {
		t.Fatalf("during the outage the cache serves %+v", svc)
	}
	if s != want {
		t.Error("the snapshot changed while etcd was down")
	}

	// A gateway restarted during the outage routes from the file.
	deadCli := etcdtest.NewClient(t, srv.Endpoints()...)
	reg2 := prometheus.NewRegistry()
	started := time.Now()
	c2 := startCache(t, CacheConfig{Sources: oneSource(deadCli), SnapshotPath: path, FallbackAfter: 300 * time.Millisecond,
		Metrics: reg2})
	t.Logf("restarted cache ready %s into the outage", time.Since(started).Round(time.Millisecond))
	s2 := c2.Snapshot()
	if !c2.FromDisk() {
		t.Error("FromDisk = false")
	}
	if svc, ok := s2.Service(key); !ok || len(svc.Clusters) != 1 || svc.Clusters[0] != "west" {
		t.Errorf("restarted cache serves %+v", svc)
	}
	if s2.Revision() != want.Revision() {
		t.Errorf("restarted revision = %d, want %d", s2.Revision(), want.Revision())
	}
	if st := c2.Sources(); len(st) != 1 || st[0].Listed {
		t.Errorf("sources = %+v, want one unlisted source", st)
	}

	// Writes during the outage fail explicitly.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := NewStore(deadCli, ks).PutExport(ctx, testExport("west", "shop", "new", time.Now()))
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("PutExport during the outage: err = %v, want ErrUnavailable", err)
	}
}

// TestCacheCorruptRecords is T06 (a)-(d): corrupt and hostile values are
// skipped and counted once per key revision, valid ones around them apply,
// and a bad value replacing a good one keeps the good one.
func TestCacheCorruptRecords(t *testing.T) {
	_, cli := etcdtest.Start(t, 1)
	ks := Keyspace{}
	reg := prometheus.NewRegistry()
	c := startCache(t, CacheConfig{Sources: oneSource(cli), Metrics: reg})

	badKey := ks.Export("west", "shop", "bad")
	bad := []struct {
		name  string
		key   string
		value []byte
		kind  string
	}{
		{"random bytes", badKey, []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x42}, "export"},
		{"wrong type", badKey, encode(t, testGateway("west", "gw-9")), "export"},
		{"invalid fields", badKey, encode(t, testExport("west", "shop", "bad", time.Now(), tcpPort("http", 0))), "export"},
		{"oversize", badKey, make([]byte, MaxRecordSize+1), "export"},
		{"metadata endpoint", ks.Endpoint("west", "shop", "bad", "p1"),
			encode(t, testEndpointAddr("west", "shop", "bad", "p1", "169.254.169.254:80")), "endpoint"},
		{"unknown key", ks.Root() + "clusters/west/unknown/x", []byte("x"), "unknown"},
	}
	putRaw(t, cli, ks.Export("west", "shop", "first"), encode(t, testExport("west", "shop", "first", time.Unix(1, 0))))
	for _, b := range bad {
		putRaw(t, cli, b.key, b.value)
	}
	putRaw(t, cli, ks.Export("west", "shop", "last"), encode(t, testExport("west", "shop", "last", time.Unix(1, 0))))
	s := waitFor(t, c, "the last valid record", func(s *Snapshot) bool {
		return s.Export("west", ServiceKey{Namespace: "shop", Name: "last"}) != nil
	})
	if s.Export("west", ServiceKey{Namespace: "shop", Name: "first"}) == nil {
		t.Error("a valid record before the bad ones is missing")
	}
	if s.Export("west", ServiceKey{Namespace: "shop", Name: "bad"}) != nil {
		t.Error("a bad export was applied")
	}
	if eps := s.Endpoints("west", ServiceKey{Namespace: "shop", Name: "bad"}); len(eps) != 0 {
		t.Error("a metadata-service endpoint was applied")
	}
	for kind, want := range map[string]float64{"export": 4, "endpoint": 1, "unknown": 1} {
		if got := counterValue(t, reg, "strait_federation_invalid_records_total", map[string]string{"kind": kind}); got != want {
			t.Errorf("invalid %s records = %v, want %v", kind, got, want)
		}
	}

	// A bad value replacing a good one keeps the last good one.
	goodKey := ks.Export("west", "shop", "kept")
	putRaw(t, cli, goodKey, encode(t, testExport("west", "shop", "kept", time.Unix(1, 0), tcpPort("http", 8080))))
	waitFor(t, c, "the good value", func(s *Snapshot) bool {
		return s.Export("west", ServiceKey{Namespace: "shop", Name: "kept"}) != nil
	})
	putRaw(t, cli, goodKey, []byte("garbage"))
	putRaw(t, cli, ks.Export("west", "shop", "barrier"), encode(t, testExport("west", "shop", "barrier", time.Unix(1, 0))))
	s = waitFor(t, c, "the barrier", func(s *Snapshot) bool {
		return s.Export("west", ServiceKey{Namespace: "shop", Name: "barrier"}) != nil
	})
	if e := s.Export("west", ServiceKey{Namespace: "shop", Name: "kept"}); e.GetPorts()[0].GetPort() != 8080 {
		t.Errorf("kept = %v, want the last good value", e)
	}
	// Deleting the key removes it (there is no good value to keep any more).
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := cli.Delete(ctx, goodKey); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "the deletion", func(s *Snapshot) bool {
		return s.Export("west", ServiceKey{Namespace: "shop", Name: "kept"}) == nil
	})
	if got := counterValue(t, reg, "strait_federation_invalid_records_total", map[string]string{"kind": "export"}); got != 5 {
		t.Errorf("invalid export records = %v, want 5", got)
	}
}

// TestCacheConflicts checks MCS semantics: one global service, the oldest
// export wins a port conflict, and the conflict is visible in the snapshot
// and the metric. An edit of the oldest export keeps it the oldest.
func TestCacheConflicts(t *testing.T) {
	_, cli := etcdtest.Start(t, 1)
	ks := Keyspace{}
	reg := prometheus.NewRegistry()
	c := startCache(t, CacheConfig{Sources: oneSource(cli), Metrics: reg})
	store := NewStore(cli, ks)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	exports := []*straitv1.Export{
		testExport("east", "shop", "payments", base.Add(2*time.Hour), tcpPort("http", 8080)),
		testExport("west", "shop", "payments", base, tcpPort("http", 80)), // oldest
		testExport("north", "shop", "payments", base.Add(time.Hour), tcpPort("http", 80)),
		testExport("south", "shop", "payments", base.Add(3*time.Hour), tcpPort("web", 80)),
	}
	for _, e := range exports {
		if _, err := store.PutExport(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	for _, cl := range []string{"east", "west", "north", "south"} {
		putRaw(t, cli, ks.Gateway(cl, "gw-0"), encode(t, testGateway(cl, "gw-0")))
	}
	key := ServiceKey{Namespace: "shop", Name: "payments"}
	s := waitFor(t, c, "four gateways", func(s *Snapshot) bool {
		svc, _ := s.Service(key)
		return len(svc.Clusters) == 4
	})
	svc, _ := s.Service(key)
	if fmt.Sprint(svc.Clusters) != "[west north east south]" {
		t.Errorf("clusters = %v, want oldest first", svc.Clusters)
	}
	if len(svc.Ports) != 1 || svc.Ports[0].GetPort() != 80 || !svc.HasPort(80) || svc.HasPort(8080) {
		t.Errorf("ports = %v, want the oldest export's", svc.Ports)
	}
	if len(svc.Conflicts) != 2 || svc.Conflicts[0].Cluster != "east" || svc.Conflicts[1].Cluster != "south" {
		t.Errorf("conflicts = %+v", svc.Conflicts)
	}
	waitGauge(t, reg, "strait_federation_service_conflicts", 2)

	// West edits its export without a creation time: it keeps its age and
	// still wins; the edit now conflicts with north as well.
	if _, err := store.PutExport(ctx, &straitv1.Export{Cluster: "west", Namespace: "shop", Service: "payments",
		Ports: []*straitv1.ServicePort{tcpPort("http", 81)}}); err != nil {
		t.Fatal(err)
	}
	s = waitFor(t, c, "west's edit", func(s *Snapshot) bool {
		return s.Export("west", key).GetPorts()[0].GetPort() == 81
	})
	svc, _ = s.Service(key)
	if svc.Clusters[0] != "west" || svc.Ports[0].GetPort() != 81 || len(svc.Conflicts) != 3 {
		t.Errorf("after the edit: clusters %v ports %v conflicts %+v", svc.Clusters, svc.Ports, svc.Conflicts)
	}
	waitGauge(t, reg, "strait_federation_service_conflicts", 3)
}

// waitGauge waits up to 10 s for the unlabelled metric name to read want
// (the cache sets its gauges after it publishes the snapshot a test sees
// first), then fails the test if it does not.
func waitGauge(t *testing.T, reg *prometheus.Registry, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for counterValue(t, reg, name, nil) != want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling the gauge
	}
	if v := counterValue(t, reg, name, nil); v != want {
		t.Errorf("%s = %v, want %v", name, v, want)
	}
}

// TestCacheLiveConfig writes configuration as an operator would with
// etcdctl (protojson) and sees it without a restart.
func TestCacheLiveConfig(t *testing.T) {
	_, cli := etcdtest.Start(t, 1)
	ks := Keyspace{}
	c := startCache(t, CacheConfig{Sources: oneSource(cli)})
	if got := c.Snapshot().Config("west").GetDrainTimeout(); got != nil {
		t.Fatalf("drain timeout before = %v", got)
	}
	putRaw(t, cli, ks.GlobalConfig(), []byte(`{"drainTimeout": "20s", "idleTimeout": "40s"}`))
	waitFor(t, c, "global config", func(s *Snapshot) bool {
		return s.Config("west").GetDrainTimeout().AsDuration() == 20*time.Second
	})
	putRaw(t, cli, ks.ClusterConfig("west"), []byte("\n  {\"idleTimeout\": \"45s\"}"))
	s := waitFor(t, c, "west's override", func(s *Snapshot) bool {
		return s.Config("west").GetIdleTimeout().AsDuration() == 45*time.Second
	})
	if got := s.Config("west").GetDrainTimeout().AsDuration(); got != 20*time.Second {
		t.Errorf("west drain timeout = %s, want the global 20s", got)
	}
	if got := s.Config("east").GetIdleTimeout().AsDuration(); got != 40*time.Second {
		t.Errorf("east idle timeout = %s, want the global 40s", got)
	}
	// A config with a field this version does not know fails closed: the
	// last good one stays.
	putRaw(t, cli, ks.GlobalConfig(), []byte(`{"drainTimeout": "1s", "futurePolicy": true}`))
	putRaw(t, cli, ks.ClusterConfig("east"), []byte(`{"drainTimeout": "5s"}`))
	s = waitFor(t, c, "east's override", func(s *Snapshot) bool { return s.Config("east").GetDrainTimeout() != nil })
	if got := s.Config("west").GetDrainTimeout().AsDuration(); got != 20*time.Second {
		t.Errorf("west drain timeout = %s after a bad global config, want the last good 20s", got)
	}
}

// TestCacheMultipleSources merges two etcds (one per cluster, as ClusterMesh
// does) and keeps serving the local one while a remote one is down; a cache
// started while that remote is unreachable is ready with the local view.
func TestCacheMultipleSources(t *testing.T) {
	_, westCli := etcdtest.Start(t, 1)
	eastSrv, eastCli := etcdtest.Start(t, 1)
	// The caches reach east through a proxy that can cut it off.
	eastProxy := newTCPProxy(t, eastSrv.Endpoints()[0])
	ks := Keyspace{}
	putRaw(t, westCli, ks.Export("west", "shop", "payments"), encode(t, testExport("west", "shop", "payments", time.Unix(1, 0))))
	putRaw(t, eastCli, ks.Export("east", "shop", "payments"), encode(t, testExport("east", "shop", "payments", time.Unix(2, 0))))
	c := startCache(t, CacheConfig{Sources: []Source{{Name: "west", Client: westCli},
		{Name: "east", Client: dialTest(t, eastProxy.URL())}},
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	key := ServiceKey{Namespace: "shop", Name: "payments"}
	if n := len(c.Snapshot().Exports(key)); n != 2 {
		t.Fatalf("merged exports = %d, want 2", n)
	}
	eastProxy.Pause()
	putRaw(t, westCli, ks.Export("west", "shop", "cart"), encode(t, testExport("west", "shop", "cart", time.Unix(1, 0))))
	s := waitFor(t, c, "west's new export", func(s *Snapshot) bool {
		return s.Export("west", ServiceKey{Namespace: "shop", Name: "cart"}) != nil
	})
	if n := len(s.Exports(key)); n != 2 {
		t.Errorf("with east down the cache serves %d exports of payments, want 2 (east's last known)", n)
	}

	started := time.Now()
	c2 := startCache(t, CacheConfig{Sources: []Source{{Name: "west", Client: westCli},
		{Name: "east", Client: dialTest(t, eastProxy.URL())}}, FallbackAfter: 300 * time.Millisecond})
	t.Logf("ready %s with one source unreachable", time.Since(started).Round(time.Millisecond))
	if c2.Snapshot().Export("west", key) == nil {
		t.Error("the reachable source is not served")
	}
	st := c2.Sources()
	if !st[0].Listed || st[1].Listed {
		t.Errorf("source status = %+v, want west listed and east degraded", st)
	}

	// East comes back: the second cache catches up without a restart.
	eastProxy.Resume()
	waitFor(t, c2, "east after it returns", func(s *Snapshot) bool { return len(s.Exports(key)) == 2 })
}

// TestCacheDetectsBlackholedWatch is the client side of T04: the cache's
// connection silently drops everything. The progress heartbeat notices
// (staleness grows, the watch is restarted), and once the path heals the
// cache catches up.
func TestCacheDetectsBlackholedWatch(t *testing.T) {
	srv, cli := etcdtest.Start(t, 1)
	proxy := newTCPProxy(t, srv.Endpoints()[0])
	cacheCli, err := Dial(ClientConfig{Endpoints: []string{proxy.URL()}, KeepAlive: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cacheCli.Close() })
	ks := Keyspace{}
	reg := prometheus.NewRegistry()
	c := startCache(t, CacheConfig{Sources: oneSource(cacheCli), Metrics: reg, ProgressInterval: 200 * time.Millisecond,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond})

	proxy.Blackhole()
	putRaw(t, cli, ks.Export("west", "shop", "during"), encode(t, testExport("west", "shop", "during", time.Unix(1, 0))))
	poll(t, "the stalled watch to be restarted", func() bool {
		return counterValue(t, reg, "strait_federation_watch_restarts_total", nil) >= 1 &&
			counterValue(t, reg, "strait_federation_config_staleness_seconds", nil) > 0.6
	})
	healed := time.Now()
	proxy.Heal()
	waitFor(t, c, "the write made during the blackhole", func(s *Snapshot) bool {
		return s.Export("west", ServiceKey{Namespace: "shop", Name: "during"}) != nil
	})
	t.Logf("caught up %s after the path healed", time.Since(healed).Round(time.Millisecond))
}

// freeURL returns an http URL on a free loopback port.
func freeURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

// TestCacheConvergesAfterRestart is the recovery half of T02: etcd stops
// completely, restarts from its data directory, and the cache converges
// promptly (the client's reconnect backoff is capped) with a single list.
func TestCacheConvergesAfterRestart(t *testing.T) {
	member := embedded.Member{Name: "m0", Dir: t.TempDir(), ClientURL: freeURL(t), PeerURL: freeURL(t)}
	var servers []*embedded.Server
	// Registered first, so it runs last: after the cache stopped watching.
	t.Cleanup(func() {
		for _, s := range servers {
			_ = s.Close()
		}
	})
	start := func() *embedded.Server {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		srv, err := embedded.Start(ctx, embedded.Config{Members: []embedded.Member{member}})
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, srv)
		return srv
	}
	srv := start()
	proxy := newTCPProxy(t, member.ClientURL)
	cacheCli, err := Dial(ClientConfig{Endpoints: []string{proxy.URL()}, KeepAlive: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cacheCli.Close() })
	ks := Keyspace{}
	writer := etcdtest.NewClient(t, member.ClientURL)
	putRaw(t, writer, ks.Export("west", "shop", "before"), encode(t, testExport("west", "shop", "before", time.Unix(1, 0))))
	reg := prometheus.NewRegistry()
	c := startCache(t, CacheConfig{Sources: oneSource(cacheCli), Metrics: reg, ProgressInterval: 200 * time.Millisecond,
		RetryMin: 50 * time.Millisecond, RetryMax: time.Second})

	// Cut the cache off first (etcd's shutdown waits for open watches),
	// then stop etcd and keep it down long enough for backoffs to grow.
	proxy.Pause()
	_ = srv.Close()
	poll(t, "staleness during the outage", func() bool {
		return counterValue(t, reg, "strait_federation_config_staleness_seconds", nil) > 2
	})
	start()
	putRaw(t, writer, ks.Export("west", "shop", "after"), encode(t, testExport("west", "shop", "after", time.Unix(1, 0))))
	restored := time.Now()
	proxy.Resume()
	waitFor(t, c, "the write made after the restart", func(s *Snapshot) bool {
		return s.Export("west", ServiceKey{Namespace: "shop", Name: "after"}) != nil
	})
	t.Logf("converged %s after etcd returned", time.Since(restored).Round(time.Millisecond))
	if v := counterValue(t, reg, "strait_federation_relists_total", nil); v != 1 {
		t.Errorf("relists = %v, want 1: resuming the watch needs no list", v)
	}
}

// TestCachePersistDebounces checks that a burst of changes is persisted a
// few times, not once per snapshot, and that the file ends up whole and
// current with no temporary files left behind.
func TestCachePersistDebounces(t *testing.T) {
	_, cli := etcdtest.Start(t, 1)
	ks := Keyspace{}
	dir := t.TempDir()
	path := filepath.Join(dir, "snapshot.json")
	reg := prometheus.NewRegistry()
	c := startCache(t, CacheConfig{Sources: oneSource(cli), SnapshotPath: path, PersistDelay: 300 * time.Millisecond, Metrics: reg})
	const burst = 100
	for i := range burst {
		name := fmt.Sprintf("svc-%d", i)
		putRaw(t, cli, ks.Export("west", "shop", name), encode(t, testExport("west", "shop", name, time.Unix(1, 0))))
	}
	waitFor(t, c, "the burst", func(s *Snapshot) bool { return len(s.Services()) == burst })
	var ds diskSnapshot
	poll(t, "the file to hold the burst", func() bool {
		data, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		if err := json.Unmarshal(data, &ds); err != nil {
			t.Fatalf("snapshot file is not whole: %v", err)
		}
		return len(ds.Records) == burst
	})
	published := counterValue(t, reg, "strait_federation_snapshots_published_total", nil)
	persisted := counterValue(t, reg, "strait_federation_snapshot_persists_total", nil)
	t.Logf("%v snapshots published, %v persisted", published, persisted)
	// The cache may itself coalesce the burst into a few snapshots; the file
	// must be written at most once per four of them (and once at least).
	if persisted > max(1, published/4) || persisted > 10 {
		t.Errorf("%v snapshots persisted for %v published: not debounced", persisted, published)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("snapshot directory holds %d files, want 1", len(entries))
	}
}
