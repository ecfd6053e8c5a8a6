package smoke

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/load"
	"github.com/strait-mesh/strait/e2e/netns"
	"github.com/strait-mesh/strait/e2e/wait"
	"github.com/strait-mesh/strait/e2e/wan"
)

// The WAN emulator's own throughput ceiling, with iperf3 as the client: a
// benchmark through a link cannot go faster than this.
func TestIperf3ThroughWANLink(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topo := netns.BuildT(t, netns.Spec{Logger: quietLogger(), Clusters: []netns.ClusterSpec{
		{Name: "east", Hosts: []string{"client"}},
		{Name: "west", Hosts: []string{"gw1", "pod1"}},
	}})
	client, gw, pod := topo.Host("east", "client"), topo.Host("west", "gw1"), topo.Host("west", "pod1")
	if _, err := load.Iperf3Server(pod, 5201); err != nil {
		t.Fatal(err)
	}
	var direct load.Iperf3Result
	wait.For(t, 10*time.Second, "iperf3 server", func() bool {
		var err error
		direct, err = load.Iperf3(ctx, gw, pod.Addr().String(), 5201, 1, 2*time.Second)
		return err == nil
	})
	link, err := topo.StartLink(ctx, wan.LinkConfig{Listen: ":5201", Backends: []string{pod.AddrPort(5201)}})
	if err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParseAddrPort(link.Addr().String()).Addr().String()
	via, err := load.Iperf3(ctx, client, vip, 5201, 1, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("iperf3 1 stream, 2 s: in west directly %.2f Gbit/s; east -> west through the WAN link (no delay) %.2f Gbit/s",
		direct.ReceivedBitsPerS/1e9, via.ReceivedBitsPerS/1e9)
	if via.ReceivedBitsPerS < 1e8 {
		t.Errorf("throughput through the link %.0f bit/s, want at least 100 Mbit/s", via.ReceivedBitsPerS)
	}
}
