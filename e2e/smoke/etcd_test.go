package smoke

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/etcdcluster"
	"github.com/strait-mesh/strait/e2e/load"
	"github.com/strait-mesh/strait/e2e/netns"
	"github.com/strait-mesh/strait/e2e/toolbin"
	"github.com/strait-mesh/strait/e2e/wait"
)

// A 3-member etcd region, written to from a gateway host of another cluster
// while its leader is killed, then stopped and restarted as a whole.
func TestEtcdClusterSurvivesLeaderKill(t *testing.T) {
	netns.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := toolbin.Path(ctx, "etcd")
	if err != nil {
		t.Fatal(err)
	}
	topo := netns.BuildT(t, netns.Spec{Logger: quietLogger(), Clusters: []netns.ClusterSpec{
		{Name: "east", Hosts: []string{"gw1"}},
		{Name: "etcd", Hosts: []string{"m1", "m2", "m3"}, Routed: true},
	}})
	gw := topo.Host("east", "gw1")
	c, err := etcdcluster.Start(ctx, etcdcluster.Config{Hosts: topo.Cluster("etcd").Hosts(), Binary: bin,
		DataDir: t.TempDir(), ClientHost: gw, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	// Writes at 50/s from east/gw1, each with a 3 s budget.
	type put struct {
		start   time.Time
		latency time.Duration
		err     error
	}
	var mu sync.Mutex
	var puts []put
	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				pctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				start := time.Now()
				_, err := cli.Put(pctx, fmt.Sprintf("/strait/v1/e2e/%d", i), "v")
				mu.Lock()
				puts = append(puts, put{start, time.Since(start), err})
				mu.Unlock()
			}()
		}
	}()
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Let writes flow for half a second, then kill the leader.
	waitPuts := func(n int) {
		wait.For(t, 10*time.Second, fmt.Sprintf("%d puts", n), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(puts) >= n
		})
	}
	waitPuts(25)
	killed := time.Now()
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	elected := time.Since(killed)
	mu.Lock()
	base := len(puts)
	mu.Unlock()
	waitPuts(base + 50)
	wcancel()
	wg.Wait()

	// etcd does not retry a write that fails during an election ("leader
	// changed", "no leader", timeouts): failures are allowed from the kill
	// until the cluster was seen healthy again, and not afterwards.
	var failed, failedAfter int
	var slowest time.Duration
	kinds := map[string]int{}
	for _, p := range puts {
		slowest = max(slowest, p.latency)
		if p.err == nil {
			continue
		}
		failed++
		kinds[p.err.Error()]++
		if p.start.After(killed.Add(elected)) {
			failedAfter++
		}
	}
	newLeader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed leader %s: healthy again after %s (new leader %s); %d puts from east/gw1 at 50/s, %d failed during the election %v, slowest %s",
		c.Members()[leader].Name, elected.Round(time.Millisecond), c.Members()[newLeader].Name, len(puts), failed, kinds, slowest.Round(time.Millisecond))
	if failedAfter > 0 {
		t.Errorf("%d puts started after the cluster was healthy again failed", failedAfter)
	}

	if err := c.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	if err := c.StopAll(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	if err := c.StartAll(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "/strait/v1/e2e/0")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("after a full restart: %v, %v", resp, err)
	}
	t.Logf("full stop and start: healthy %s after StartAll, data kept", time.Since(restarted).Round(time.Millisecond))
	lat := make([]time.Duration, 0, len(puts))
	for _, p := range puts {
		lat = append(lat, p.latency)
	}
	slices.Sort(lat)
	load.Report(t, load.Row{Scenario: "smoke: etcd leader kill (no Strait)", Sent: len(puts), Failed: failed,
		Reroute: elected, Return: -1, P50: lat[len(lat)/2], P99: lat[len(lat)*99/100],
		Note: "etcd puts at 50/s; reroute = new leader and a write accepted; failures allowed only during the election"})
}
