//go:build kubenode

package kubenode_test

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/strait-mesh/strait/e2e/kubenode"
	"github.com/strait-mesh/strait/e2e/netns"
)

// startClusters builds one topology with a cluster of one host ("node") per
// name and starts a real node on each at once, the i-th with the pod
// subnet 10.244.(i+1).0/24 and the service range 10.96.(i+1).0/24; edit
// (may be nil) completes each node's Config (images, node IP, CoreDNS,
// manifests) before any starts. The nodes are closed when the test ends.
func startClusters(ctx context.Context, t *testing.T, prefix string, names []string, bin string,
	edit func(topo *netns.Topology, i int, cfg *kubenode.Config) error) (*netns.Topology, map[string]*kubenode.Node) {
	t.Helper()
	spec := netns.Spec{Prefix: prefix + "-" + randomSuffix()}
	for _, n := range names {
		spec.Clusters = append(spec.Clusters, netns.ClusterSpec{Name: n, Hosts: []string{"node"}})
	}
	topo := netns.BuildT(t, spec)
	nodes := make(map[string]*kubenode.Node)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for i, name := range names {
		cfg := kubenode.Config{
			Host:        topo.Host(name, "node"),
			BinDir:      bin,
			PodCIDR:     netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i+1)),
			ServiceCIDR: netip.MustParsePrefix(fmt.Sprintf("10.96.%d.0/24", i+1)),
		}
		if edit != nil {
			if err := edit(topo, i, &cfg); err != nil {
				t.Fatal(err)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := kubenode.Start(ctx, cfg)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			nodes[name] = n
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	t.Cleanup(func() {
		for _, n := range nodes {
			if err := n.Close(); err != nil {
				t.Errorf("closing %s: %v", n.Name(), err)
			}
		}
	})
	for err := range errs {
		t.Fatalf("starting a node: %v", err)
	}
	return topo, nodes
}

// clustersMemory sums the memory of the nodes and names each one's share.
func clustersMemory(t *testing.T, names []string, nodes map[string]*kubenode.Node) (uint64, string) {
	t.Helper()
	var total uint64
	var parts []string
	for _, name := range names {
		m, err := nodes[name].Memory()
		if err != nil {
			t.Fatal(err)
		}
		total += m.Total()
		parts = append(parts, name+" "+strconv.FormatUint(m.Total()>>20, 10)+" MiB")
	}
	return total, strings.Join(parts, ", ")
}
