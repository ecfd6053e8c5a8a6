package etcdcluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/e2e/netns"
	"github.com/strait-mesh/strait/e2e/toolbin"
	"github.com/strait-mesh/strait/e2e/wait"
	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// Bounds of TestLeaderSIGKILLUnderExportWrites.
const (
	// writesBeforeKill and writesAfterKill are how many exports the writer
	// must have had acknowledged before the kill, and after it.
	writesBeforeKill = 30
	writesAfterKill  = 50
	// writeTimeout bounds one PutExport; a write that times out is
	// indeterminate (it may or may not have been applied).
	writeTimeout = 2 * time.Second
)

// TestLeaderSIGKILLUnderExportWrites is the leader kill of T01 on real
// processes: the leader of a 3-member cluster of the pinned etcd binary is
// killed with SIGKILL while federation.Store writes exports in a loop and a
// federation.Cache watches them. The survivors must hold an election (a
// new leader at a higher raft term: nothing was handed over), and
// afterwards every acknowledged export must be in etcd, in the cache, and
// on the killed member once it has restarted; no snapshot the cache
// published may go backwards: revisions only grow, no export once seen
// disappears from a later snapshot, and every snapshot at revision R holds
// every acknowledged export created at or before R.
func TestLeaderSIGKILLUnderExportWrites(t *testing.T) {
	netns.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := toolbin.Path(ctx, "etcd")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	topo := netns.BuildT(t, netns.Spec{Logger: log, Clusters: []netns.ClusterSpec{
		{Name: "etcd", Hosts: []string{"m1", "m2", "m3"}, Routed: true},
	}})
	c, err := Start(ctx, Config{Hosts: topo.Cluster("etcd").Hosts(), Binary: bin, DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })

	writerCli := client(t, c)
	store := federation.NewStore(writerCli, federation.Keyspace{})
	cache, err := federation.NewCache(federation.CacheConfig{Sources: []federation.Source{{Client: client(t, c)}},
		RetryMin: 20 * time.Millisecond, RetryMax: 500 * time.Millisecond, ProgressInterval: 500 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { _ = cache.Run(runCtx) })
	select {
	case <-cache.Synced():
	case <-ctx.Done():
		t.Fatal("cache never synced")
	}

	obs := &observer{}
	wg.Go(func() { obs.run(runCtx, cache) })
	wctx, stopWriter := context.WithCancel(runCtx)
	defer stopWriter()
	w := &writer{store: store, cancel: stopWriter, done: make(chan struct{})}
	wg.Go(func() { w.run(wctx) })

	wait.For(t, time.Minute, fmt.Sprintf("%d acknowledged exports before the kill", writesBeforeKill),
		func() bool { return w.acked() >= writesBeforeKill })
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before, err := c.Statuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ackedAtKill := w.acked()
	killed := time.Now()
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 2*time.Minute, fmt.Sprintf("%d exports acknowledged after the kill", writesAfterKill),
		func() bool { return w.acked() >= ackedAtKill+writesAfterKill })
	recovered := w.firstAckAfter(killed)
	newLeader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after, err := c.Statuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if newLeader == leader {
		t.Errorf("the killed member m%d is still the leader", leader+1)
	}
	if maxTerm(after) <= maxTerm(before) {
		t.Errorf("raft term %d after the kill, %d before: no election", maxTerm(after), maxTerm(before))
	}

	// The writer stops; the cache gets until it holds every acknowledged
	// export (or 30 s), then stops too.
	acks, failed := w.finish()
	wctx, cancelWait := context.WithTimeout(ctx, 30*time.Second)
	_ = wait.Until(wctx, 20*time.Millisecond, func(context.Context) (bool, error) {
		return missing(cache.Snapshot(), acks) == nil, nil
	})
	cancelWait()
	stopAll()
	wg.Wait()
	last := cache.Snapshot()
	// Where each acknowledged export is in etcd, and at what revision.
	created := map[string]int64{}
	resp, err := writerCli.Get(ctx, federation.Keyspace{}.Export("west", "shop", ""), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		created[string(kv.Key)] = kv.CreateRevision
	}
	for _, name := range acks {
		if _, ok := created[federation.Keyspace{}.Export("west", "shop", name)]; !ok {
			t.Errorf("acknowledged export %s is not in etcd", name)
		}
	}
	// The cache no longer runs: its last snapshot is final.
	if lost := missing(last, acks); len(lost) > 0 {
		t.Errorf("the cache's last snapshot (revision %d) lacks %d acknowledged exports: %v", last.Revision(), len(lost), lost)
	}
	snaps := obs.snapshots()
	for _, problem := range checkHistory(snaps, acks, created) {
		t.Error(problem)
	}

	// The killed member comes back with every acknowledged export.
	if err := c.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	own, err := c.Client(c.Members()[leader].ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	wait.For(t, 30*time.Second, "the restarted member to hold every acknowledged export", func() bool {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := own.Get(rctx, federation.Keyspace{}.Export("west", "shop", ""), clientv3.WithPrefix(), clientv3.WithSerializable())
		if err != nil {
			return false
		}
		have := map[string]bool{}
		for _, kv := range resp.Kvs {
			have[string(kv.Key)] = true
		}
		for _, name := range acks {
			if !have[federation.Keyspace{}.Export("west", "shop", name)] {
				return false
			}
		}
		return true
	})
	t.Logf("leader m%d SIGKILLed after %d acknowledged exports; new leader m%d at term %d (was %d); first write acknowledged %s after the kill; %d exports acknowledged, %d writes failed or timed out (indeterminate); the cache published %d snapshots seen, revisions %d to %d",
		leader+1, ackedAtKill, newLeader+1, maxTerm(after), maxTerm(before), recovered.Round(time.Millisecond),
		len(acks), failed, len(snaps), snaps[0].Revision(), last.Revision())
}

func client(t *testing.T, c *Cluster) *clientv3.Client {
	t.Helper()
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

func maxTerm(sts []Status) uint64 {
	var m uint64
	for _, st := range sts {
		m = max(m, st.RaftTerm)
	}
	return m
}

// writer puts exports west/shop/svc-1, svc-2, … one after the other, each
// once, and records which were acknowledged and when.
type writer struct {
	store  *federation.Store
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns

	mu     sync.Mutex
	acks   []string
	ackAt  []time.Time
	failed int
}

func (w *writer) run(ctx context.Context) {
	defer close(w.done)
	for i := 1; ctx.Err() == nil; i++ {
		name := fmt.Sprintf("svc-%d", i)
		wctx, cancel := context.WithTimeout(ctx, writeTimeout)
		_, err := w.store.PutExport(wctx, &straitv1.Export{Cluster: "west", Namespace: "shop", Service: name,
			Ports: []*straitv1.ServicePort{{Name: "http", Port: 8080, Protocol: straitv1.Protocol_PROTOCOL_TCP}}})
		cancel()
		w.mu.Lock()
		if err == nil {
			w.acks = append(w.acks, name)
			w.ackAt = append(w.ackAt, time.Now())
		} else if ctx.Err() == nil {
			w.failed++
		}
		w.mu.Unlock()
	}
}

func (w *writer) acked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks)
}

// finish stops the writer and returns the acknowledged exports and the
// number of failed writes.
func (w *writer) finish() ([]string, int) {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.acks...), w.failed
}

// firstAckAfter returns how long after t the first write was acknowledged.
func (w *writer) firstAckAfter(t time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, at := range w.ackAt {
		if at.After(t) {
			return at.Sub(t)
		}
	}
	return -1
}

// observer keeps every snapshot the cache publishes, in the order seen.
type observer struct {
	mu    sync.Mutex
	snaps []*federation.Snapshot
}

func (o *observer) run(ctx context.Context, c *federation.Cache) {
	for {
		ch := c.Changed()
		s := c.Snapshot()
		o.mu.Lock()
		if n := len(o.snaps); n == 0 || o.snaps[n-1] != s {
			o.snaps = append(o.snaps, s)
		}
		o.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

func (o *observer) snapshots() []*federation.Snapshot {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*federation.Snapshot(nil), o.snaps...)
}

// missing returns the acknowledged exports s lacks.
func missing(s *federation.Snapshot, names []string) []string {
	var out []string
	for _, name := range names {
		if s.Export("west", federation.ServiceKey{Namespace: "shop", Name: name}) == nil {
			out = append(out, name)
		}
	}
	return out
}

// checkHistory checks snapshots in the order the cache published them:
// revisions never decrease, an export once seen is in every later snapshot
// (nothing is ever deleted here), and a snapshot at revision R holds every
// acknowledged export whose key etcd created at or before R.
func checkHistory(snaps []*federation.Snapshot, acks []string, created map[string]int64) []string {
	var problems []string
	seen := map[string]bool{}
	for i, s := range snaps {
		if i > 0 && s.Revision() < snaps[i-1].Revision() {
			problems = append(problems, fmt.Sprintf("snapshot %d went back from revision %d to %d", i, snaps[i-1].Revision(), s.Revision()))
		}
		for name := range seen {
			if s.Export("west", federation.ServiceKey{Namespace: "shop", Name: name}) == nil {
				problems = append(problems, fmt.Sprintf("snapshot %d (revision %d) lost %s, seen in an earlier one", i, s.Revision(), name))
			}
		}
		for _, name := range acks {
			rev := created[federation.Keyspace{}.Export("west", "shop", name)]
			has := s.Export("west", federation.ServiceKey{Namespace: "shop", Name: name}) != nil
			if has {
				seen[name] = true
			} else if rev != 0 && rev <= s.Revision() {
				problems = append(problems, fmt.Sprintf("snapshot %d at revision %d lacks %s, acknowledged and created at revision %d", i, s.Revision(), name, rev))
			}
		}
		if len(problems) > 20 {
			return append(problems, "…")
		}
	}
	return problems
}
