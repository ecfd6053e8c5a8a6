package netns

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/wait"
	"github.com/strait-mesh/strait/e2e/wan"
)

func TestMain(m *testing.M) {
	RunHelpers(map[string]HelperFunc{"echo": echoMain})
	os.Exit(m.Run())
}

// echoMain echoes TCP on -listen until SIGTERM, then logs "bye".
func echoMain(args []string) int {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	listen := fs.String("listen", "", "address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("listening on", ln.Addr())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	fmt.Println("bye")
	return 0
}

func TestSpecValidation(t *testing.T) {
	_, err := Build(context.Background(), Spec{Prefix: "Bad_Prefix", Clusters: []ClusterSpec{
		{Name: "east", Hosts: []string{"a", "a"}}, {Name: "east"}, {Name: "wan"},
	}})
	if !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"prefix", "listed twice", `"east" used twice`, `"wan" used twice or reserved`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
}

func testSpec() Spec {
	return Spec{
		Logger: slog.New(slog.DiscardHandler),
		Clusters: []ClusterSpec{
			{Name: "east", Hosts: []string{"gw1", "client"}},
			{Name: "west", Hosts: []string{"gw1", "pod1"}},
			{Name: "etcd", Hosts: []string{"m1"}, Routed: true},
		}}
}

func TestTopology(t *testing.T) {
	start := time.Now()
	topo := BuildT(t, testSpec())
	t.Logf("built %d clusters in %s, prefix %s", len(topo.Clusters()), time.Since(start).Round(time.Millisecond), topo.Prefix())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	client, pod, member := topo.Host("east", "client"), topo.Host("west", "pod1"), topo.Host("etcd", "m1")
	if got, want := client.Addr(), netip.MustParseAddr("10.77.1.11"); got != want {
		t.Errorf("east/client addr = %s, want %s", got, want)
	}
	if got, want := pod.Addr(), netip.MustParseAddr("10.77.2.11"); got != want {
		t.Errorf("west/pod1 addr = %s, want %s", got, want)
	}

	// An echo server on west/pod1, run as a separate process.
	echo, err := pod.StartHelper("echo", "-listen", pod.AddrPort(7000))
	if err != nil {
		t.Fatal(err)
	}
	if err := echo.WaitLog(ctx, "listening on"); err != nil {
		t.Fatal(err)
	}

	// Same cluster: reachable. Other cluster directly: unreachable, fast.
	if err := echoOnce(ctx, topo.Host("west", "gw1"), pod.AddrPort(7000)); err != nil {
		t.Errorf("same cluster: %v", err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = client.DialContext(dctx, "tcp", pod.AddrPort(7000))
	dcancel()
	if err == nil || !errors.Is(err, syscall.ENETUNREACH) && !errors.Is(err, syscall.EHOSTUNREACH) {
		t.Errorf("east to west directly: err = %v, want unreachable", err)
	}

	// Through a WAN link in front of west: reachable, with the delay.
	link, err := topo.StartLink(ctx, wan.LinkConfig{Listen: ":7000", Backends: []string{pod.AddrPort(7000)}, Delay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("link listens on %s", link.Addr())
	if !strings.HasPrefix(link.Addr().String(), "10.77.0.") {
		t.Errorf("link address %s is not a WAN address", link.Addr())
	}
	rtt, err := echoRTT(ctx, client, link.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("east/client -> WAN link (10 ms one-way) -> west/pod1: RTT %s", rtt)
	if rtt < 20*time.Millisecond || rtt > 23*time.Millisecond {
		t.Errorf("RTT through link = %s, want 20-23ms", rtt)
	}

	// The routed etcd cluster is reachable from both clusters.
	if _, err := member.StartHelper("echo", "-listen", member.AddrPort(7001)); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*Host{client, pod} {
		if err := waitEcho(ctx, h, member.AddrPort(7001)); err != nil {
			t.Errorf("%s to etcd/m1: %v", h, err)
		}
	}

	// Command runs inside the namespace.
	out, err := client.Output(ctx, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
	if err != nil || !strings.Contains(string(out), "10.77.1.11/24") {
		t.Errorf("ip addr in east/client: %q, %v", out, err)
	}

	// SIGTERM stops the helper cleanly; Restart brings it back.
	if err := echo.Stop(5 * time.Second); err != nil {
		t.Errorf("stop: %v", err)
	}
	if !strings.Contains(echo.Log(), "bye") {
		t.Errorf("helper log lacks the SIGTERM message: %q", echo.Log())
	}
	echo2, err := echo.Restart()
	if err != nil {
		t.Fatal(err)
	}
	if err := waitEcho(ctx, topo.Host("west", "gw1"), pod.AddrPort(7000)); err != nil {
		t.Fatal(err)
	}
	if err := echo2.Kill(); err != nil {
		t.Fatal(err)
	}
	if exited, err := echo2.Exited(); !exited || err == nil {
		t.Errorf("after kill -9: exited %v err %v", exited, err)
	}
}

func TestHostPartition(t *testing.T) {
	topo := BuildT(t, Spec{Logger: slog.New(slog.DiscardHandler), Clusters: []ClusterSpec{
		{Name: "a", Hosts: []string{"h1", "h2", "h3"}},
		{Name: "b", Hosts: []string{"m1"}, Routed: true},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h1, h2, h3, m1 := topo.Host("a", "h1"), topo.Host("a", "h2"), topo.Host("a", "h3"), topo.Host("b", "m1")
	for _, h := range []*Host{h2, m1} {
		if _, err := h.StartHelper("echo", "-listen", h.AddrPort(7000)); err != nil {
			t.Fatal(err)
		}
		if err := waitEcho(ctx, h1, h.AddrPort(7000)); err != nil {
			t.Fatal(err)
		}
	}
	// A host-level cut: h1 loses h2, keeps h3.
	peer := netip.PrefixFrom(h2.Addr(), 32)
	if err := h1.Partition(ctx, peer); err != nil {
		t.Fatal(err)
	}
	if err := echoOnce(ctx, h1, h2.AddrPort(7000)); err == nil {
		t.Error("h1 reached h2 through a partition")
	} else {
		t.Logf("h1 -> h2 while partitioned on h1: %v", err)
	}
	if _, err := h3.StartHelper("echo", "-listen", h3.AddrPort(7000)); err != nil {
		t.Fatal(err)
	}
	if err := waitEcho(ctx, h1, h3.AddrPort(7000)); err != nil {
		t.Errorf("h1 to h3 while h2 is cut: %v", err)
	}
	if err := h1.Heal(ctx, peer); err != nil {
		t.Fatal(err)
	}
	if err := echoOnce(ctx, h1, h2.AddrPort(7000)); err != nil {
		t.Errorf("after heal: %v", err)
	}

	// A router-level cut of the routed cluster: a silent blackhole for the hosts.
	router := topo.Cluster("a").Router()
	if err := router.Partition(ctx, topo.Cluster("b").Subnet()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := echoOnce(ctx, h1, m1.AddrPort(7000))
	if err == nil {
		t.Error("h1 reached cluster b through a router partition")
	}
	t.Logf("h1 -> b/m1 while the router blackholes b: %v after %s", err, time.Since(start).Round(time.Millisecond))
	if err := router.HealAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := waitEcho(ctx, h1, m1.AddrPort(7000)); err != nil {
		t.Errorf("after HealAll: %v", err)
	}
}

func TestCloseRemovesEverythingAndSweep(t *testing.T) {
	RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := testSpec()
	spec.LogDir = t.TempDir()
	topo, err := Build(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	prefix := topo.Prefix()
	// A process the topology did not start, left in a namespace.
	stray := startStray(t, topo.Host("east", "gw1"))
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	if n := countNS(t, ctx, prefix); n != 0 {
		t.Errorf("%d namespaces left after Close", n)
	}
	if err := stray.Wait(); err == nil {
		t.Error("stray process was not killed")
	}
	if err := topo.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// Leftovers of a crashed run: namespaces with a dead owner are swept;
	// those of a live owner are not.
	dead := "st-sweep1"
	for _, ns := range []string{dead + "-wan", dead + "-x-y"} {
		if err := runIP(ctx, "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(OwnerDir+"/"+dead, []byte("999999999 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	live, err := Build(ctx, Spec{Logger: slog.New(slog.DiscardHandler), LogDir: t.TempDir(), Clusters: []ClusterSpec{{Name: "c", Hosts: []string{"h"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	swept, err := SweepStale(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !contains(swept, dead) || contains(swept, live.Prefix()) {
		t.Errorf("swept %v; want %s and not %s", swept, dead, live.Prefix())
	}
	if n := countNS(t, ctx, dead); n != 0 {
		t.Errorf("%d namespaces of %s left after SweepStale", n, dead)
	}
	if n := countNS(t, ctx, live.Prefix()); n != 3 {
		t.Errorf("live topology has %d namespaces after SweepStale, want 3", n)
	}
}

// TestForwardingSysctls checks IPv4 forwarding in every namespace of a
// topology, on every interface and in the default new interfaces get:
// routers forward, hosts do not, and the WAN namespace forwards only when a
// cluster is Routed. New namespaces copy the host's IPv4 settings
// (net.core.devconf_inherit_init_net=0), so on a host that forwards (a
// Docker or Kubernetes node) this fails unless the harness writes the value
// in each namespace it creates.
func TestForwardingSysctls(t *testing.T) {
	routed := testSpec()
	plain := testSpec()
	plain.Clusters = plain.Clusters[:2]
	host, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatalf("cannot read the host's ip_forward: %v", err)
	}
	t.Logf("the host's net.ipv4.ip_forward is %s", strings.TrimSpace(string(host)))
	for _, tc := range []struct {
		name string
		spec Spec
		wan  string
	}{
		{"routed cluster", routed, "1"},
		{"no routed cluster", plain, "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topo := BuildT(t, tc.spec)
			ctx := context.Background()
			hosts := topo.hosts
			want := 1 // the WAN namespace, then a router and the hosts per cluster
			for _, c := range tc.spec.Clusters {
				want += 1 + len(c.Hosts)
			}
			if len(hosts) != want {
				t.Fatalf("topology has %d namespaces, want %d", len(hosts), want)
			}
			for _, h := range hosts {
				want := "0"
				switch {
				case h == topo.WAN():
					want = tc.wan
				case h.Router() == h:
					want = "1"
				}
				// ip_forward, then every interface's and the default's
				// forwarding, one "path:value" per line.
				out, err := h.Output(ctx, "sh", "-c", "cat /proc/sys/net/ipv4/ip_forward; grep . /proc/sys/net/ipv4/conf/*/forwarding")
				if err != nil {
					t.Errorf("%s: %v", h, err)
					continue
				}
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				if lines[0] != want {
					t.Errorf("%s: net.ipv4.ip_forward = %s, want %s", h, lines[0], want)
				}
				if len(lines) < 4 { // all, default, lo and at least one link
					t.Errorf("%s: forwarding of %d interfaces listed, want at least 4: %q", h, len(lines)-1, out)
				}
				for _, l := range lines[1:] {
					if path, v, _ := strings.Cut(l, ":"); v != want {
						t.Errorf("%s: %s = %s, want %s", h, path, v, want)
					}
				}
			}
		})
	}
}

// Pending connects from inside a namespace hold no OS thread each: with 500
// dials waiting in SYN-SENT, the process has far fewer than 500 threads. (Go
// keeps the threads a burst of locked goroutines made it create, so the
// count is a high-water mark of the burst, not of what the dials hold.)
func TestPendingDialsHoldNoThreads(t *testing.T) {
	topo := BuildT(t, testSpec())
	ctx := context.Background()
	router := topo.Cluster("east").Router()
	if err := router.Partition(ctx, topo.Cluster("etcd").Subnet()); err != nil {
		t.Fatal(err)
	}
	client, target := topo.Host("east", "client"), topo.Host("etcd", "m1").AddrPort(7000)
	before := threads(t)
	const n = 500
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	done := make(chan error, n)
	for range n {
		go func() {
			c, err := client.DialContext(dctx, "tcp", target)
			if err == nil {
				c.Close()
			}
			done <- err
		}()
	}
	wait.For(t, 5*time.Second, "500 connects in SYN-SENT", func() bool {
		out, err := client.Output(ctx, "ss", "-Htn", "state", "syn-sent")
		return err == nil && strings.Count(string(out), "\n") >= n
	})
	pending := threads(t)
	cancel()
	for range n {
		if err := <-done; err == nil {
			t.Error("a dial into a blackhole succeeded")
		}
	}
	t.Logf("%d dials pending in SYN-SENT: %d OS threads (%d before)", n, pending, before)
	if pending > before+n/2 {
		t.Errorf("%d threads with %d pending dials (%d before)", pending, n, before)
	}
}

func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

func TestClusterKill(t *testing.T) {
	topo := BuildT(t, testSpec())
	var west []*Proc
	for _, h := range topo.Cluster("west").Hosts() {
		p, err := h.StartHelper("echo", "-listen", h.AddrPort(7000))
		if err != nil {
			t.Fatal(err)
		}
		west = append(west, p)
	}
	east, err := topo.Host("east", "gw1").StartHelper("echo", "-listen", topo.Host("east", "gw1").AddrPort(7000))
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.Cluster("west").Kill(); err != nil {
		t.Fatal(err)
	}
	for _, p := range west {
		if exited, _ := p.Exited(); !exited {
			t.Errorf("%s still runs after the cluster was killed", p.Host())
		}
	}
	if exited, _ := east.Exited(); exited {
		t.Error("a process of another cluster died")
	}
	if got := len(topo.Procs(topo.Host("east", "gw1"))); got != 1 {
		t.Errorf("Procs(east/gw1) = %d, want 1", got)
	}
}

func TestClusterIsolateAndRejoin(t *testing.T) {
	topo := BuildT(t, testSpec())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pod, gw, member, client := topo.Host("west", "pod1"), topo.Host("west", "gw1"), topo.Host("etcd", "m1"), topo.Host("east", "client")
	for _, h := range []*Host{pod, member} {
		if _, err := h.StartHelper("echo", "-listen", h.AddrPort(7000)); err != nil {
			t.Fatal(err)
		}
	}
	link, err := topo.StartLink(ctx, wan.LinkConfig{Listen: ":7000", Backends: []string{pod.AddrPort(7000)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := waitEcho(ctx, client, link.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if err := waitEcho(ctx, pod, member.AddrPort(7000)); err != nil {
		t.Fatal(err)
	}
	west := topo.Cluster("west")
	if err := west.Isolate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := echoOnce(ctx, client, link.Addr().String()); err == nil {
		t.Error("east reached west through its link while west was isolated")
	}
	if err := echoOnce(ctx, pod, member.AddrPort(7000)); err == nil {
		t.Error("isolated west reached the etcd region")
	}
	if err := echoOnce(ctx, gw, pod.AddrPort(7000)); err != nil {
		t.Errorf("inside isolated west: %v", err)
	}
	if err := west.Rejoin(ctx); err != nil {
		t.Fatal(err)
	}
	if err := waitEcho(ctx, client, link.Addr().String()); err != nil {
		t.Errorf("after Rejoin, east to west: %v", err)
	}
	if err := waitEcho(ctx, pod, member.AddrPort(7000)); err != nil {
		t.Errorf("after Rejoin, west to etcd: %v", err)
	}
}
