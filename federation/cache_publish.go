package federation

import (
	"context"
	"slices"
	"time"
)

// runFallback declares the cache synced after FallbackAfter if it serves
// anything by then.
func (c *Cache) runFallback(ctx context.Context) {
	if !sleepCtx(ctx.Done(), c.cfg.FallbackAfter) {
		return
	}
	select {
	case <-c.synced:
		return
	default:
	}
	anyListed := false
	for _, s := range c.sources {
		s.mu.Lock()
		anyListed = anyListed || s.listed
		s.mu.Unlock()
	}
	if anyListed || c.fromDisk.Load() {
		c.cfg.Logger.Warn("federation: serving a partial or persisted snapshot: some sources are unreachable",
			logRevision, c.Snapshot().Revision())
		c.markSynced()
	}
}

func (c *Cache) markSynced() { c.syncedOnce.Do(func() { close(c.synced) }) }

// markDirty asks the publisher for a new snapshot.
func (c *Cache) markDirty() {
	select {
	case c.dirty <- struct{}{}:
	default:
	}
}

// runPublisher builds and publishes a snapshot whenever a source changed.
// Changes that arrive while it builds are coalesced into the next one.
func (c *Cache) runPublisher(ctx context.Context) {
	// With gateway staleness on, gateways can go stale without any event:
	// check a few times per staleness period.
	var check <-chan time.Time
	if c.cfg.GatewayStaleAfter > 0 {
		t := time.NewTicker(c.cfg.GatewayStaleAfter / 4)
		defer t.Stop()
		check = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.dirty:
		case <-check:
			if slices.Equal(c.staleGateways(), c.state.Load().stale) {
				continue
			}
		}
		c.publish()
	}
}

// staleGateways lists, sorted, the keys of gateways whose records have not
// been rewritten for GatewayStaleAfter of their source's answering time.
func (c *Cache) staleGateways() []string {
	if c.cfg.GatewayStaleAfter <= 0 {
		return nil
	}
	var out []string
	now := time.Now().UnixNano()
	// A source silent for longer than this is unreachable, not idle.
	silent := 3 * c.cfg.ProgressInterval
	if silent <= 0 {
		silent = c.cfg.GatewayStaleAfter
	}
	for _, s := range c.sources {
		ref := now
		if heard := s.lastHeard.Load(); now-heard > int64(silent) {
			ref = heard // the clock stops while the source is unreachable
		}
		s.mu.Lock()
		for k, e := range s.entries {
			if e.rec.Info.Kind == KindGateway && ref-e.written.Load() > int64(c.cfg.GatewayStaleAfter) {
				out = append(out, k)
			}
		}
		s.mu.Unlock()
	}
	slices.Sort(out)
	return out
}

// publish merges the sources' records into a new snapshot and swaps it in.
func (c *Cache) publish() {
	var entries []*entry
	seen := map[string]bool{}
	var revision int64
	allListed, anyDisk := true, false
	for _, s := range c.sources {
		s.mu.Lock()
		revision += s.rev
		allListed = allListed && s.listed
		anyDisk = anyDisk || s.fromDisk
		for k, e := range s.entries {
			if len(c.sources) == 1 {
				entries = append(entries, e)
			} else if !seen[k] {
				seen[k] = true
				entries = append(entries, e)
			}
		}
		s.mu.Unlock()
	}
	stale := c.staleGateways()
	records := make([]Record, 0, len(entries))
	for _, e := range entries {
		if _, found := slices.BinarySearch(stale, e.rec.Key); found {
			continue
		}
		records = append(records, e.rec)
	}
	prev := c.state.Load()
	snap := prev.snap.Next(revision, records)
	next := &published{snap: snap, changed: make(chan struct{}), entries: entries, stale: stale,
		rejected: c.countRejected(prev.rejected, snap)}
	if !slices.Equal(prev.stale, stale) {
		c.cfg.Logger.Warn("federation: the set of gateways withdrawn for a missed heartbeat changed",
			logStale, stale, logRevision, revision)
	}
	c.metrics.staleGateways.Set(float64(len(stale)))
	old := c.state.Swap(next)
	close(old.changed)
	c.fromDisk.Store(anyDisk)

	c.metrics.snapshots.Inc()
	c.metrics.revision.Set(float64(revision))
	c.metrics.conflicts.Set(float64(countConflicts(snap)))
	if allListed {
		c.markSynced()
	}
	if c.cfg.SnapshotPath != "" {
		select {
		case c.persist <- struct{}{}:
		default:
		}
	}
}

// countConflicts counts the exports in conflict across every service.
func countConflicts(s *Snapshot) int {
	n := 0
	for _, k := range s.Services() {
		if svc, ok := s.Service(k); ok {
			n += len(svc.Conflicts)
		}
	}
	return n
}

// countRejected counts and logs the endpoint records a snapshot left out
// because their SPIFFE ID may not serve their service, once per key
// revision (prev holds those already counted), and returns the new map.
func (c *Cache) countRejected(prev map[string]int64, snap *Snapshot) map[string]int64 {
	rejected := snap.RejectedEndpoints()
	if len(rejected) == 0 {
		return nil
	}
	out := make(map[string]int64, len(rejected))
	for _, r := range rejected {
		out[r.Record.Key] = r.Record.ModRevision
		if rev, ok := prev[r.Record.Key]; ok && rev == r.Record.ModRevision {
			continue
		}
		c.metrics.invalid.WithLabelValues(string(KindEndpoint), ReasonServerIdentity).Inc()
		c.cfg.Logger.Warn("federation: skipping endpoint whose identity may not serve the service", logKey, r.Record.Key,
			logKind, KindEndpoint, logReason, ReasonServerIdentity, logRevision, r.Record.ModRevision, logError, r.Err)
	}
	return out
}
