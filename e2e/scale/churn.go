package scale

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// probe is one change every cache must come to show.
type probe struct {
	kind  string
	at    time.Time
	check func(*federation.Snapshot) bool
	seen  uint64 // bit i: cache i showed it
	done  func() // called once every cache showed it
}

// probes are the changes awaiting caches, and the latencies measured.
type probes struct {
	mu      sync.Mutex
	pending []*probe
	samples map[string][]time.Duration // by kind, one per (change, cache)
}

func (p *probes) add(pr *probe) {
	p.mu.Lock()
	p.pending = append(p.pending, pr)
	p.mu.Unlock()
}

// observe checks, on every snapshot cache idx publishes, which pending
// changes it shows.
func (s *sim) observe(ctx context.Context, idx int, c *federation.Cache) {
	bit := uint64(1) << idx
	for {
		ch := c.Changed()
		snap := c.Snapshot()
		now := time.Now()
		s.probes.mu.Lock()
		var todo []*probe
		for _, pr := range s.probes.pending {
			if pr.seen&bit == 0 {
				todo = append(todo, pr)
			}
		}
		s.probes.mu.Unlock()
		for _, pr := range todo {
			if !pr.check(snap) {
				continue
			}
			s.probes.mu.Lock()
			pr.seen |= bit
			if s.probes.samples == nil {
				s.probes.samples = map[string][]time.Duration{}
			}
			s.probes.samples[pr.kind] = append(s.probes.samples[pr.kind], now.Sub(pr.at))
			all := uint64(1)<<len(s.caches) - 1
			finished := pr.seen&all == all
			if finished {
				s.probes.pending = slices.DeleteFunc(s.probes.pending, func(x *probe) bool { return x == pr })
			}
			s.probes.mu.Unlock()
			if finished && pr.done != nil {
				pr.done()
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// churn runs one churn phase per configured rate, one after the other.
func (s *sim) churn(ctx context.Context, rep *Report) error {
	for _, rate := range s.cfg.Churn {
		ph := &Phase{Churn: rate}
		rep.Phases = append(rep.Phases, ph)
		if err := s.runPhase(ctx, rep, ph); err != nil {
			return err
		}
		s.cfg.Logf("churn %.2f %%: %d changes (%.0f/s), endpoint propagation p50 %s p99 %s, %d unseen",
			100*rate, ph.Changes, ph.ChangesPerSecond, ph.Percentile("endpoint", 0.5), ph.Percentile("endpoint", 0.99), len(ph.Unseen))
	}
	return nil
}

// runPhase changes endpoints' readiness at the phase's rate for the
// configured duration, kills and brings back clusters' gateways, rotates
// bundles and routes connections through the real clusters meanwhile,
// and measures.
func (s *sim) runPhase(ctx context.Context, rep *Report, ph *Phase) error {
	s.probes.mu.Lock()
	s.probes.samples = nil
	s.probes.mu.Unlock()
	before, err := s.etcd.stats()
	if err != nil {
		return err
	}
	cpuBefore, _, _ := procStats(os.Getpid())
	endpoints := s.cfg.Clusters * s.cfg.ExportsPerCluster * s.cfg.EndpointsPerExport
	perSecond := ph.Churn * float64(endpoints)
	const tick = 20 * time.Millisecond
	perTick := perSecond * tick.Seconds()
	s.cfg.Logf("churn: %.0f endpoint changes/s for %s", perSecond, s.cfg.Duration)

	cctx, cancel := context.WithTimeout(ctx, s.cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	var deathErr error
	var phMu sync.Mutex // guards ph's counters and errors between the goroutines
	wg.Go(func() { deathErr = s.killAndReturn(ctx, cctx, ph, &phMu) })
	wg.Go(func() { s.rotateBundles(cctx, ph, &phMu) })
	wg.Go(func() { s.routeDuringChurn(ctx, cctx, ph, &phMu) })

	t := time.NewTicker(tick)
	defer t.Stop()
	credit := 0.0
	start := time.Now()
	skipped, changes := 0, 0
loop:
	for {
		select {
		case <-cctx.Done():
			break loop
		case <-t.C:
		}
		credit += perTick
		for ; credit >= 1; credit-- {
			if !s.flipOne() {
				skipped++
			} else {
				changes++
			}
		}
	}
	elapsed := time.Since(start)
	wg.Wait()
	if deathErr != nil && ctx.Err() == nil {
		return deathErr
	}
	// Let the last changes arrive, then count what never did.
	drain := time.Now().Add(2*s.cfg.LeaseTTL + 10*time.Second)
	for time.Now().Before(drain) {
		s.probes.mu.Lock()
		n := len(s.probes.pending)
		s.probes.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	after, err := s.etcd.stats()
	if err != nil {
		return err
	}
	cpuAfter, rss, _ := procStats(os.Getpid())
	wall := after.at.Sub(before.at).Seconds()
	ph.ChurnSeconds = elapsed.Seconds()
	ph.Changes = changes
	ph.ChangesPerSecond = float64(changes) / elapsed.Seconds()
	ph.SkippedChanges = skipped
	ph.EtcdCPU = (after.cpuSeconds - before.cpuSeconds) / wall
	ph.EtcdRSS = after.rssBytes
	ph.EtcdDB = after.dbBytes
	ph.EtcdDBInUse = after.dbInUse
	ph.KeepAlivesPerSecond = (after.keepAlives - before.keepAlives) / wall
	ph.EtcdRequestsPerSecond = (after.grpcMsgs - before.grpcMsgs) / wall
	ph.EventsPerCachePerSecond = (after.events - before.events) / wall / float64(len(s.caches)+len(s.real))
	ph.RaftPerSecond = (after.committed - before.committed) / wall
	ph.ApplyLag = after.applyLag
	ph.Grants = int(after.grants - before.grants)
	ph.TxnsPerSecond = (after.txns - before.txns) / wall
	ph.HarnessCPU = (cpuAfter - cpuBefore) / wall
	ph.HarnessRSS = rss
	ph.LoadAfter = loadAverage()
	s.probes.mu.Lock()
	defer s.probes.mu.Unlock()
	ph.Samples = s.probes.samples
	for _, pr := range s.probes.pending {
		ph.Unseen = append(ph.Unseen, pr.kind)
	}
	// What one phase left unseen is not awaited in the next.
	s.probes.pending = nil
	s.readyMu.Lock()
	clear(s.inFlight)
	s.readyMu.Unlock()
	return nil
}

// flipOne changes the readiness of one random endpoint that no probe
// awaits, and reports whether it found one.
func (s *sim) flipOne() bool {
	c := s.rng.IntN(s.cfg.Clusters)
	e := s.rng.IntN(s.cfg.ExportsPerCluster)
	i := s.rng.IntN(s.cfg.EndpointsPerExport)
	cluster := clusterName(c)
	key, _ := s.endpoint(cluster, e, i, false)
	s.readyMu.Lock()
	if s.inFlight[key] {
		s.readyMu.Unlock()
		return false
	}
	ready := !s.ready[key]
	s.ready[key] = ready
	s.inFlight[key] = true
	s.readyMu.Unlock()
	_, ep := s.endpoint(cluster, e, i, ready)
	svc := federation.ServiceKey{Namespace: "shop", Name: ep.GetService()}
	id := ep.GetId()
	s.probes.add(&probe{kind: "endpoint", at: time.Now(), check: func(snap *federation.Snapshot) bool {
		for _, got := range snap.Endpoints(cluster, svc) {
			if got.GetId() == id {
				return got.GetReady() == ready
			}
		}
		return false
	}, done: func() {
		s.readyMu.Lock()
		delete(s.inFlight, key)
		s.readyMu.Unlock()
	}})
	s.endpointRegs[c].Put(key, ep)
	return true
}

// killAndReturn kills the gateways of the first clusters one after the
// other (their leases expire), waits until every cache withdraws the
// cluster, then starts them again.
// The gateways that return run until the end of the run (runCtx), not of
// the phase (ctx).
func (s *sim) killAndReturn(runCtx, ctx context.Context, ph *Phase, mu *sync.Mutex) error {
	every := s.cfg.Duration / (deaths + 1)
	for c := range deaths {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every / 2):
		}
		cluster := clusterName(c)
		gone := make(chan struct{})
		s.probes.add(&probe{kind: "gateways-dead", at: time.Now(), check: func(snap *federation.Snapshot) bool {
			return !snap.ClusterAlive(cluster)
		}, done: func() { close(gone) }})
		s.gateways[c].kill()
		select {
		case <-gone:
		case <-ctx.Done():
			return nil
		}
		back := make(chan struct{})
		s.probes.add(&probe{kind: "gateways-back", at: time.Now(), check: func(snap *federation.Snapshot) bool {
			return snap.ClusterAlive(cluster)
		}, done: func() { close(back) }})
		pair, err := s.startGateways(runCtx, c)
		if err != nil {
			return err
		}
		s.gateways[c] = pair
		select {
		case <-back:
		case <-ctx.Done():
			return nil
		}
		mu.Lock()
		ph.Deaths++
		mu.Unlock()
	}
	return nil
}

// rotateBundles publishes a new bundle sequence of one trust domain every
// few seconds.
func (s *sim) rotateBundles(ctx context.Context, ph *Phase, mu *sync.Mutex) {
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		s.bundleSeq++
		seq := s.bundleSeq
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		td := trustDomain(clusterName(int(seq) % s.cfg.Clusters))
		b := &straitv1.TrustBundle{TrustDomain: td, Sequence: seq, X509Authorities: [][]byte{s.ca}, UpdatedAt: timestamppb.Now()}
		pr := &probe{kind: "bundle", at: time.Now(), check: func(snap *federation.Snapshot) bool {
			return snap.Bundle(td).GetSequence() >= seq
		}}
		s.probes.add(pr)
		if _, err := s.clients[0].Put(ctx, s.ks.Bundle(td), mustMarshal(b)); err != nil {
			// A rotation the end of churn cut short awaits nothing.
			s.probes.mu.Lock()
			s.probes.pending = slices.DeleteFunc(s.probes.pending, func(x *probe) bool { return x == pr })
			s.probes.mu.Unlock()
			if ctx.Err() == nil {
				mu.Lock()
				ph.Errors = append(ph.Errors, fmt.Sprintf("rotate bundle %s: %v", td, err))
				mu.Unlock()
			}
			continue
		}
		mu.Lock()
		ph.Rotations++
		mu.Unlock()
	}
}
