package gateway

import (
	"context"
	"time"
)

// statsInterval is how often peer RTT and liveness are sampled.
const statsInterval = time.Second

// watch applies every new snapshot (live configuration, remote pool) and
// samples peer statistics until ctx ends.
func (g *Gateway) watch(ctx context.Context) error {
	tick := time.NewTicker(statsInterval)
	defer tick.Stop()
	for {
		changed := g.cfg.Snapshots.Changed()
		snap := g.cfg.Snapshots.Snapshot()
		g.pool.prune(snap)
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				g.pool.sample(ctx)
				continue
			case <-changed:
			}
			break
		}
	}
}
