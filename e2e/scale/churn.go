package scale

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
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
	// notBefore, when set, is the earliest a cache may show the change:
	// a cache that shows it sooner is counted in probes.early.
	notBefore time.Time
	what      string // names the change in probes.early
}

// probes are the changes awaiting caches, and the latencies measured.
type probes struct {
	mu      sync.Mutex
	pending []*probe
	samples map[string][]time.Duration // by kind, one per (change, cache)
	early   []string                   // changes a cache showed before their notBefore
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
			if now.Before(pr.notBefore) {
				s.probes.early = append(s.probes.early, fmt.Sprintf("cache %d showed %s %s after it, %s too soon",
					idx, pr.what, now.Sub(pr.at).Round(time.Millisecond), pr.notBefore.Sub(now).Round(time.Millisecond)))
			}
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
	s.probes.early = nil
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
	ph.Sched = s.sched.window(start, start.Add(elapsed))
	s.probes.mu.Lock()
	defer s.probes.mu.Unlock()
	ph.Samples = s.probes.samples
	ph.EarlyWithdrawals = s.probes.early
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

// killAndReturn kills the gateways of clusters 0 to deaths-1 during the
// phase (ctx), one cluster at each of evenly spaced moments (at 1/4 and
// 3/4 of the phase with two deaths), whatever the TTL: each death goes on
// (deathAndReturn) past the phase's end until the cluster is back, so
// that a phase shorter than the lease TTL still counts its deaths and
// leaves no cluster dead for the next phase to kill again. It returns
// once every death it started has returned.
// The gateways that return run until the end of the run (runCtx), not of
// the phase.
func (s *sim) killAndReturn(runCtx, ctx context.Context, ph *Phase, mu *sync.Mutex) error {
	start := time.Now()
	errs := make([]error, deaths)
	var wg sync.WaitGroup
	for c := range deaths {
		at := start.Add(time.Duration(2*c+1) * s.cfg.Duration / (2 * deaths))
		select {
		case <-ctx.Done():
			wg.Wait()
			return errors.Join(errs...)
		case <-time.After(time.Until(at)):
		}
		wg.Go(func() { errs[c] = s.deathAndReturn(runCtx, c, ph, mu) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// deathAndReturn kills cluster c's gateways as a SIGKILL would (their
// leases are neither renewed nor revoked), waits until every cache has
// withdrawn both records (kind "gateways-dead", measured from the
// death), then starts the cluster's gateways again and waits until every
// cache shows both new records (kind "gateways-back", measured from the
// return). Each wait lasts at most 2 TTLs and 10 s; what a cache did not
// show by then is counted unseen at the phase's end.
//
// A cache must not withdraw the records before their leases could
// expire: etcd's remaining TTL of each lease, asked just before the death
// (whole seconds, rounded down), sets the earliest withdrawal; any sooner
// is counted in the phase's EarlyWithdrawals.
func (s *sim) deathAndReturn(ctx context.Context, c int, ph *Phase, mu *sync.Mutex) error {
	cluster := clusterName(c)
	pair := s.gateways[c]
	asked := time.Now()
	left, err := s.leaseLeft(ctx, pair.leases())
	if err != nil {
		return err
	}
	leases := pair.leases()
	gone := make(chan struct{})
	old := pair.started
	at := time.Now()
	s.probes.add(&probe{kind: "gateways-dead", at: at, notBefore: asked.Add(left),
		what: fmt.Sprintf("the withdrawal of %s's gateways (%s lease left at death)", cluster, left),
		check: func(snap *federation.Snapshot) bool {
			return gatewaysOf(snap, cluster, old) == 0
		}, done: func() { close(gone) }})
	if err := pair.kill(); err != nil {
		return fmt.Errorf("%s: %w", cluster, err)
	}
	mu.Lock()
	ph.Deaths++
	ph.LeaseLeftAtDeath = append(ph.LeaseLeftAtDeath, left)
	mu.Unlock()
	s.cfg.Logf("killed %s's gateways (leases %x, %s left)", cluster, leases, left)
	wait := 2*s.cfg.LeaseTTL + 10*time.Second
	if !waitFor(ctx, gone, wait) {
		if ctx.Err() != nil {
			return nil
		}
		s.cfg.Logf("%s's gateways not withdrawn by every cache %s after their death; starting them again", cluster, wait)
	} else {
		s.cfg.Logf("%s's gateways withdrawn by every cache %s after their death", cluster, time.Since(at).Round(time.Millisecond))
	}
	back := make(chan struct{})
	started := time.Now()
	s.probes.add(&probe{kind: "gateways-back", at: started, check: func(snap *federation.Snapshot) bool {
		return gatewaysOf(snap, cluster, started) == 2
	}, done: func() { close(back) }})
	pair, err = s.startGateways(ctx, c, started)
	if err != nil {
		return err
	}
	s.gateways[c] = pair
	mu.Lock()
	ph.Returns++
	mu.Unlock()
	waitFor(ctx, back, wait)
	return nil
}

// leaseLeft asks etcd for the remaining TTL of each lease and returns the
// least; a lease already gone is an error (the gateways were dead before
// the harness killed them).
func (s *sim) leaseLeft(ctx context.Context, ids []clientv3.LeaseID) (time.Duration, error) {
	least := time.Duration(-1)
	for _, id := range ids {
		resp, err := s.clients[0].TimeToLive(ctx, id)
		if err != nil {
			return 0, fmt.Errorf("scale: lease %x: %w", id, err)
		}
		if resp.TTL <= 0 {
			return 0, fmt.Errorf("scale: lease %x expired before the gateways holding it were killed", id)
		}
		if d := time.Duration(resp.TTL) * time.Second; least < 0 || d < least {
			least = d
		}
	}
	return least, nil
}

// waitFor waits for ch to close, at most d; it reports whether ch closed.
func waitFor(ctx context.Context, ch <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
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
