package smoke

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/load"
	"github.com/strait-mesh/strait/e2e/netns"
	"github.com/strait-mesh/strait/e2e/wait"
	"github.com/strait-mesh/strait/e2e/wan"
)

func TestMain(m *testing.M) {
	netns.RunHelpers(map[string]netns.HelperFunc{
		"load-server": load.ServerMain,
		"strait-wan":  func(args []string) int { return wan.Main(args, os.Stderr) },
	})
	os.Exit(m.Run())
}

const oneWay = 15 * time.Millisecond

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// twoClusters builds east{client} and west{gw1, pod1} and starts the test
// HTTP server on west/pod1:8080.
func twoClusters(t *testing.T, ctx context.Context) (*netns.Topology, *netns.Host) {
	t.Helper()
	topo := netns.BuildT(t, netns.Spec{Logger: quietLogger(), Clusters: []netns.ClusterSpec{
		{Name: "east", Hosts: []string{"client"}},
		{Name: "west", Hosts: []string{"gw1", "pod1"}},
	}})
	pod := topo.Host("west", "pod1")
	srv, err := pod.StartHelper("load-server", "-listen", pod.AddrPort(8080), "-cluster", "west", "-host", "pod1")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.WaitLog(ctx, "listening on"); err != nil {
		t.Fatal(err)
	}
	return topo, pod
}

// keepAliveRTTs times n requests on one HTTP connection from h.
func keepAliveRTTs(t *testing.T, ctx context.Context, h *netns.Host, url string, n int) []time.Duration {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: h.DialContext, MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	var out []time.Duration
	for i := range n + 1 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if i > 0 { // the first request pays for the connection
			out = append(out, time.Since(start))
		}
	}
	return out
}

func TestCrossClusterThroughWANLink(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topo, pod := twoClusters(t, ctx)
	client, gw := topo.Host("east", "client"), topo.Host("west", "gw1")

	link, err := topo.StartLink(ctx, wan.LinkConfig{Name: "west", Listen: ":8080",
		Backends: []string{pod.AddrPort(8080)}, Delay: oneWay, PartitionMode: wan.Refuse})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + link.Addr().String() + "/"

	// A real client across the WAN.
	body, err := load.Curl(ctx, client, url, 5*time.Second)
	if err != nil || load.ParseCluster([]byte(body)) != "west" {
		t.Fatalf("curl from east through the link: %q, %v", body, err)
	}

	// RTT: in-cluster baseline, then across the link.
	direct := keepAliveRTTs(t, ctx, gw, "http://"+pod.AddrPort(8080)+"/", 30)
	across := keepAliveRTTs(t, ctx, client, url, 30)
	added := slices.Min(across) - slices.Min(direct)
	t.Logf("HTTP request RTT on a kept-alive connection: in west min %s p50 %s; east->west via link (%s one-way) min %s p50 %s; added (min) %s",
		slices.Min(direct), median(direct), oneWay, slices.Min(across), median(across), added)
	if added < 2*oneWay || added > 2*oneWay+3*time.Millisecond {
		t.Errorf("added RTT %s, want %s to +3ms", added, 2*oneWay)
	}

	// Load at 200 new connections/s: partition, then heal.
	gen, err := load.NewGenerator(load.Config{Target: link.Addr().String(), Dial: client.DialContext, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	gctx, gcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- gen.Run(gctx) }()
	wait.For(t, 10*time.Second, "traffic through the link", func() bool { return gen.History().Summary().OK >= 100 })
	partitioned := time.Now()
	link.Partition()
	wait.For(t, 10*time.Second, "failures during the partition", func() bool {
		return len(gen.History().Between(partitioned.Add(100*time.Millisecond), time.Now()).Failures()) >= 100
	})
	healed := time.Now()
	link.Heal()
	wait.For(t, 10*time.Second, "traffic after heal", func() bool {
		return len(gen.History().Between(healed, time.Now())) >= 100
	})
	gcancel()
	<-done

	h := gen.History()
	sum := h.Summary()
	// A request that started before healed may reach the link's accept after
	// Heal (the client's dial is scheduled after its start stamp). In Refuse
	// mode the link resets every connection it accepts while partitioned, so
	// a success must have been accepted after Heal and crossed the link both
	// ways since: it cannot end before healed + 2×oneWay. One that does was
	// served during the partition.
	during := h.Between(partitioned.Add(10*time.Millisecond), healed)
	var slowest time.Duration
	crossed := 0
	for _, r := range during {
		slowest = max(slowest, r.Latency)
		if !r.OK() {
			continue
		}
		if end := r.Start.Add(r.Latency); end.Before(healed.Add(2 * oneWay)) {
			t.Errorf("request %s started %s after the partition and succeeded %s after the heal, before a round trip over the healed link",
				r.Key, r.Start.Sub(partitioned), end.Sub(healed))
			continue
		}
		crossed++
	}
	back, ok := h.FirstOKFrom(healed, "west")
	after := h.Between(healed.Add(back), time.Now())
	t.Logf("load: %s", sum)
	t.Logf("partition (refuse mode) for %s: %d requests started, %d failed (%v), %d reached the link after the heal and succeeded; slowest %s; first success %s after heal; %d failures after that",
		healed.Sub(partitioned).Round(time.Millisecond), len(during), len(during.Failures()), during.Summary().ByKind, crossed,
		slowest.Round(time.Microsecond), back.Round(time.Microsecond), len(after.Failures()))
	if slowest > 200*time.Millisecond {
		t.Errorf("a request started during the partition took %s: connections did not fail fast", slowest)
	}
	if !ok || back > time.Second {
		t.Errorf("traffic did not return within 1 s of heal (ok=%v, %s)", ok, back)
	}
	if n := len(after.Failures()); n > 0 {
		t.Errorf("%d failures after traffic returned", n)
	}
	row := load.NewRow("smoke: WAN link partition and heal (no Strait)", h)
	row.Return = back
	row.Note = fmt.Sprintf("partition %s, failures expected; slowest request started in it %s; %d started just before the heal and reached the link after it",
		healed.Sub(partitioned).Round(time.Millisecond), slowest.Round(time.Microsecond), crossed)
	load.Report(t, row)
}

// The WAN emulator as a separate process inside the WAN namespace, driven
// over its HTTP control API, with a blackhole partition: requests hang until
// the client gives up.
func TestOutOfProcessWANLinkBlackhole(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topo, pod := twoClusters(t, ctx)
	client := topo.Host("east", "client")
	vip, err := topo.NewWANAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listen := vip.String() + ":8080"
	control := topo.WAN().AddrPort(9901)
	relay, err := topo.WAN().StartHelper("strait-wan", "-name", "west", "-listen", listen,
		"-backend", pod.AddrPort(8080), "-delay", oneWay.String(), "-control", control)
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.WaitLog(ctx, "wan control endpoint"); err != nil {
		t.Fatal(err)
	}
	ctl := wan.Control{URL: "http://" + control, Client: &http.Client{Timeout: 5 * time.Second,
		Transport: &http.Transport{DialContext: topo.WAN().DialContext}}}
	url := "http://" + listen + "/"

	if _, err := load.Curl(ctx, client, url, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Partition(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = load.Curl(ctx, client, url, time.Second)
	t.Logf("curl during blackhole partition: %v after %s", firstLine(err), time.Since(start).Round(time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "exit status 28") { // curl's timeout
		t.Errorf("curl during a blackhole partition: %v, want a timeout", err)
	}
	if err := ctl.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := load.Curl(ctx, client, url, 5*time.Second); err != nil {
		t.Errorf("after heal: %v", err)
	}
	st, err := ctl.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("relay stats: %+v", st)
	// SIGUSR1 partitions, SIGUSR2 heals.
	if err := relay.Signal(10); err != nil { // SIGUSR1
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, "partition by SIGUSR1", func() bool {
		st, err := ctl.Stats(ctx)
		return err == nil && st.Partitioned
	})
	if err := relay.Stop(5 * time.Second); err != nil {
		t.Errorf("relay did not stop cleanly: %v\n%s", err, relay.Log())
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func firstLine(err error) string {
	if err == nil {
		return "<nil>"
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return fmt.Sprint(s)
}
