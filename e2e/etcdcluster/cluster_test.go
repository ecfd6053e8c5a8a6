package etcdcluster

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/netns"
	"github.com/strait-mesh/strait/e2e/toolbin"
)

func TestThreeMembersSurviveLeaderKillAndFullRestart(t *testing.T) {
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
		{Name: "east", Hosts: []string{"gw1"}},
	}})

	start := time.Now()
	c, err := Start(ctx, Config{Hosts: topo.Cluster("etcd").Hosts(), Binary: bin, DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Logf("3 members healthy %s after start", time.Since(start).Round(time.Millisecond))

	// A gateway host in another cluster reaches every member.
	gw := topo.Host("east", "gw1")
	for _, m := range c.Members() {
		out, err := gw.Output(ctx, "curl", "-sS", "--max-time", "2", m.ClientURL+"/health")
		if err != nil {
			t.Errorf("east/gw1 -> %s /health: %v", m.Name, err)
		} else {
			t.Logf("east/gw1 -> %s /health: %s", m.Name, out)
		}
	}

	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "/strait/v1/e2e", "before"); err != nil {
		t.Fatal(err)
	}

	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	newLeader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed leader %s; new leader %s elected and a write accepted %s later",
		c.Members()[leader].Name, c.Members()[newLeader].Name, time.Since(killed).Round(time.Millisecond))
	if newLeader == leader {
		t.Fatalf("leader is still the killed member")
	}
	if _, err := cli.Put(ctx, "/strait/v1/e2e", "after-kill"); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}

	// The whole cluster stops, then starts again with its data.
	if err := c.StopAll(); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Members() {
		if m.Running() {
			t.Errorf("member %s still runs after StopAll", m.Name)
		}
	}
	restarted := time.Now()
	if err := c.StartAll(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("full restart: healthy %s after StartAll", time.Since(restarted).Round(time.Millisecond))
	resp, err := cli.Get(ctx, "/strait/v1/e2e")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "after-kill" {
		t.Errorf("after restart: %v", resp.Kvs)
	}
}
