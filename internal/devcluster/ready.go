package devcluster

import (
	"context"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/strait-mesh/strait/federation"
)

// readyPoll is how often waitReady re-checks convergence between snapshot
// changes (bundle stores have no change feed of their own here).
const readyPoll = 50 * time.Millisecond

// waitReady closes f.ready once every gateway and proxy is bound and every
// cluster's snapshot shows every exported service with a live gateway and a
// ready endpoint, and every trust domain's bundle.
func (f *Federation) waitReady(ctx context.Context) error {
	for _, name := range f.clusterNames() {
		c := f.Cluster(name)
		if err := waitClosed(ctx, c.Gateway.Ready()); err != nil {
			return err
		}
		for _, p := range c.Proxies {
			if err := waitClosed(ctx, p.Ready()); err != nil {
				return err
			}
		}
	}
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for !f.converged() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	close(f.ready)
	return nil
}

func waitClosed(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-ch:
		return nil
	}
}

func (f *Federation) clusterNames() []string {
	var out []string
	for _, c := range f.cfg.Clusters {
		out = append(out, c.Name)
	}
	return out
}

func (f *Federation) converged() bool {
	var tds []spiffeid.TrustDomain
	for _, name := range f.clusterNames() {
		tds = append(tds, f.Cluster(name).TrustDomain)
	}
	for _, name := range f.clusterNames() {
		c := f.Cluster(name)
		for _, td := range tds {
			if _, err := c.Node.Bundles.GetX509BundleForTrustDomain(td); err != nil {
				return false
			}
		}
		snap := c.Node.Cache.Snapshot()
		for _, other := range f.cfg.Clusters {
			if !snap.ClusterAlive(other.Name) {
				return false
			}
			for _, s := range other.Services {
				key := federation.ServiceKey{Namespace: s.Namespace, Name: s.Name}
				if len(snap.ReadyEndpoints(other.Name, key)) == 0 {
					return false
				}
				if s.Export && snap.Export(other.Name, key) == nil {
					return false
				}
			}
		}
	}
	return true
}
