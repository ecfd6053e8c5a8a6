package federation

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/internal/etcdtest"
)

// runRegistrar runs r until the returned stop is called (or the test ends).
func runRegistrar(t testing.TB, r *Registrar) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var err error
	stopped := false
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			err = <-done
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func newTestRegistrar(t testing.TB, cli *clientv3.Client, ttl time.Duration) *Registrar {
	t.Helper()
	r, err := NewRegistrar(RegistrarConfig{Client: cli, TTL: ttl, RetryMin: 50 * time.Millisecond,
		RetryMax: 500 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func leaseOf(t testing.TB, cli *clientv3.Client, key string) (clientv3.LeaseID, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) == 0 {
		return 0, false
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease), true
}

func TestRegistrarReregistersAfterRevoke(t *testing.T) {
	_, cli := etcdtest.Start(t, 1)
	ks := Keyspace{}
	key := ks.Gateway("west", "gw-0")
	r := newTestRegistrar(t, cli, 5*time.Second)
	r.Put(key, testGateway("west", "gw-0")) // before Run
	stop := runRegistrar(t, r)
	select {
	case <-r.Registered():
	case <-time.After(waitTimeout):
		t.Fatal("not registered")
	}
	first := r.LeaseID()
	if got, ok := leaseOf(t, cli, key); !ok || got != first {
		t.Fatalf("record lease = %x (present %v), want %x", got, ok, first)
	}

	// Revoke the lease out from under the registrar: it registers again.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Revoke(ctx, first); err != nil {
		t.Fatal(err)
	}
	poll(t, "re-registration under a new lease", func() bool {
		got, ok := leaseOf(t, cli, key)
		return ok && got != first && got == r.LeaseID()
	})

	// Put and Delete while running apply promptly.
	other := ks.Endpoint("west", "shop", "payments", "p1")
	r.Put(other, testEndpoint("west", "shop", "payments", "p1"))
	poll(t, "endpoint written", func() bool { _, ok := leaseOf(t, cli, other); return ok })
	r.Delete(other)
	poll(t, "endpoint deleted", func() bool { _, ok := leaseOf(t, cli, other); return !ok })

	// Invalid records are refused, not written.
	bad := ks.Endpoint("west", "shop", "payments", "p2")
	r.Put(bad, testEndpointAddr("west", "shop", "payments", "p2", "169.254.169.254:80"))

	// Stopping revokes the lease: the records go at once.
	if err := stop(); err != context.Canceled {
		t.Fatalf("Run = %v", err)
	}
	if _, ok := leaseOf(t, cli, key); ok {
		t.Error("gateway record survived Run's return")
	}
	if _, ok := leaseOf(t, cli, bad); ok {
		t.Error("invalid record was written")
	}
}

func TestLeaseExpiryWithdrawsCluster(t *testing.T) {
	srv, cli := etcdtest.Start(t, 1)
	ks := Keyspace{}
	store := NewStore(cli, ks)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	key := ServiceKey{Namespace: "shop", Name: "payments"}
	for _, cl := range []string{"west", "east"} {
		if _, err := store.PutExport(ctx, testExport(cl, "shop", "payments", time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	c := startCache(t, CacheConfig{Sources: oneSource(cli)})

	// Each cluster's gateway registers with its own client and a 2s TTL.
	eastCli := etcdtest.NewClient(t, srv.Endpoints()...)
	west := newTestRegistrar(t, cli, 2*time.Second)
	west.Put(ks.Gateway("west", "gw-0"), testGateway("west", "gw-0"))
	runRegistrar(t, west)
	east := newTestRegistrar(t, eastCli, 2*time.Second)
	east.Put(ks.Gateway("east", "gw-0"), testGateway("east", "gw-0"))
	runRegistrar(t, east)
	waitFor(t, c, "both clusters serve", func(s *Snapshot) bool {
		svc, _ := s.Service(key)
		return len(svc.Clusters) == 2
	})

	// East's gateway dies without revoking: its client goes away, the lease
	// stops being renewed and expires; east's export stops being a candidate.
	died := time.Now()
	if err := eastCli.Close(); err != nil {
		t.Fatal(err)
	}
	s := waitFor(t, c, "east withdrawn", func(s *Snapshot) bool { return !s.ClusterAlive("east") })
	t.Logf("east withdrawn %s after its gateway died (TTL 2s)", time.Since(died).Round(10*time.Millisecond))
	svc, _ := s.Service(key)
	if len(svc.Clusters) != 1 || svc.Clusters[0] != "west" {
		t.Errorf("clusters = %v, want [west]", svc.Clusters)
	}
	if s.Export("east", key) == nil {
		t.Error("east's durable export disappeared with its gateway")
	}

	// East comes back.
	back := newTestRegistrar(t, cli, 2*time.Second)
	back.Put(ks.Gateway("east", "gw-1"), testGateway("east", "gw-1"))
	runRegistrar(t, back)
	waitFor(t, c, "east back", func(s *Snapshot) bool {
		svc, _ := s.Service(key)
		return len(svc.Clusters) == 2
	})
}

// TestHeartbeatWithdrawsGatewayWhoseLeaseLives is T05 in small: gateway
// east dies, but its lease keeps being renewed (as repeated leader elections
// do, etcd#9395). Its missing heartbeats withdraw it anyway, a heartbeating
// gateway stays, east returns with its next write, and an etcd outage
// withdraws nobody.
func TestHeartbeatWithdrawsGatewayWhoseLeaseLives(t *testing.T) {
	srv, cli := etcdtest.Start(t, 1)
	ks := Keyspace{}
	proxy := newTCPProxy(t, srv.Endpoints()[0])
	reg := prometheus.NewRegistry()
	const staleAfter = 1500 * time.Millisecond
	c := startCache(t, CacheConfig{Sources: oneSource(dialTest(t, proxy.URL())), Metrics: reg,
		GatewayStaleAfter: staleAfter, ProgressInterval: 100 * time.Millisecond})

	west, err := NewRegistrar(RegistrarConfig{Client: cli, TTL: 5 * time.Second, Heartbeat: 300 * time.Millisecond,
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	west.Put(ks.Gateway("west", "gw-0"), testGateway("west", "gw-0"))
	runRegistrar(t, west)
	// East's record lives under a lease nobody lets expire, and nobody
	// heartbeats it: east is dead but etcd does not know.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	eastValue := string(encode(t, testGateway("east", "gw-0")))
	if _, err := cli.Put(ctx, ks.Gateway("east", "gw-0"), eastValue, clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "both gateways", func(s *Snapshot) bool { return s.ClusterAlive("west") && s.ClusterAlive("east") })
	seen := time.Now()
	s := waitFor(t, c, "east withdrawn", func(s *Snapshot) bool { return !s.ClusterAlive("east") })
	t.Logf("east withdrawn %s after it was last seen (staleness %s)", time.Since(seen).Round(10*time.Millisecond), staleAfter)
	if !s.ClusterAlive("west") {
		t.Error("heartbeating west was withdrawn")
	}
	if v := counterValue(t, reg, "strait_federation_stale_gateways", nil); v != 1 {
		t.Errorf("stale gateways = %v, want 1", v)
	}
	if _, ok := leaseOf(t, cli, ks.Gateway("east", "gw-0")); !ok {
		t.Fatal("east's record is gone from etcd: the test proves nothing")
	}

	// One write, even of the same value, brings east back.
	if _, err := cli.Put(ctx, ks.Gateway("east", "gw-0"), eastValue, clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "east back", func(s *Snapshot) bool { return s.ClusterAlive("east") })

	// While etcd is unreachable nobody's heartbeat arrives, and nobody is
	// withdrawn for it.
	before := c.Snapshot()
	proxy.Pause()
	poll(t, "an outage longer than the staleness period", func() bool {
		return c.Staleness() > 2*staleAfter
	})
	if after := c.Snapshot(); after != before || !after.ClusterAlive("west") {
		t.Error("an etcd outage withdrew gateways")
	}
}
