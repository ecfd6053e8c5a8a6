package federation

import (
	"context"
	"slices"
	"time"
)

// runFallback declares the cache synced after FallbackAfter as soon as it
// publishes a snapshot that serves something: a source's listing or the
// snapshot file. It looks at published snapshots, not at the sources: a
// source may be listed while its first snapshot is still being built.
func (c *Cache) runFallback(ctx context.Context) {
	if !sleepCtx(ctx.Done(), c.cfg.FallbackAfter) {
		return
	}
	for {
		p := c.state.Load()
		select {
		case <-c.synced:
			return
		default:
		}
		if p.listed || p.fromDisk {
			c.cfg.Logger.Warn("federation: serving a partial or persisted snapshot: some sources are unreachable",
				logRevision, p.snap.Revision())
			c.markSynced()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-c.synced:
			return
		case <-p.changed:
		}
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
	for _, s := range c.sources {
		s.mu.Lock()
	}
	defer func() {
		for _, s := range c.sources {
			s.mu.Unlock()
		}
	}()
	return c.staleGatewaysLocked()
}

// staleGatewaysLocked is staleGateways for a caller holding every
// source's lock.
func (c *Cache) staleGatewaysLocked() []string {
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
		for k, w := range s.gateways {
			if ref-w.Load() > int64(c.cfg.GatewayStaleAfter) {
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}

// publish applies the records that changed since the last publish to the
// snapshot builder and swaps the new snapshot in. It rebuilds only what
// the changes touch: a change costs its own service or cluster, not the
// whole federation.
func (c *Cache) publish() {
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	prev := c.state.Load()
	var revision int64
	allListed, anyListed, anyDisk := true, false, false
	// Every source is locked at once so that the revision and the records
	// read agree; apply only ever holds one source's lock.
	for _, s := range c.sources {
		s.mu.Lock()
	}
	stale := c.staleGatewaysLocked()
	changed := c.takeChanged()
	for _, k := range symmetricDifference(prev.stale, stale) {
		changed[k] = struct{}{}
	}
	for _, s := range c.sources {
		revision += s.rev
		allListed = allListed && s.listed
		anyListed = anyListed || s.listed
		anyDisk = anyDisk || s.fromDisk
	}
	for k := range changed {
		var r *rec
		if _, found := slices.BinarySearch(stale, k); !found {
			for _, s := range c.sources {
				if e, ok := s.entries[k]; ok {
					r = &e.rec
					break
				}
			}
		}
		c.builder.set(k, r)
	}
	for _, s := range c.sources {
		s.mu.Unlock()
	}
	snap := c.builder.build(revision)
	next := &published{snap: snap, changed: make(chan struct{}), stale: stale, rejected: prev.rejected,
		listed: anyListed, fromDisk: anyDisk}
	if !sameRejected(prev.snap, snap) {
		next.rejected = c.countRejected(prev.rejected, snap)
	}
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
	c.metrics.conflicts.Set(float64(snap.conflicts))
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

// takeChanged collects and clears the keys every source changed. The
// caller holds every source's lock.
func (c *Cache) takeChanged() map[string]struct{} {
	if len(c.sources) == 1 {
		s := c.sources[0]
		out := s.changed
		s.changed = make(map[string]struct{}, min(len(out), 1024))
		return out
	}
	out := map[string]struct{}{}
	for _, s := range c.sources {
		for k := range s.changed {
			out[k] = struct{}{}
		}
		empty(&s.changed)
	}
	return out
}

// symmetricDifference lists the keys in exactly one of two sorted lists.
func symmetricDifference(a, b []string) []string {
	var out []string
	for _, k := range a {
		if _, found := slices.BinarySearch(b, k); !found {
			out = append(out, k)
		}
	}
	for _, k := range b {
		if _, found := slices.BinarySearch(a, k); !found {
			out = append(out, k)
		}
	}
	return out
}

// sameRejected reports whether two snapshots share their rejected
// endpoints (the builder shares the list when no change touched it).
func sameRejected(a, b *Snapshot) bool {
	ra, rb := a.RejectedEndpoints(), b.RejectedEndpoints()
	return len(ra) == len(rb) && (len(ra) == 0 || &ra[0] == &rb[0])
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
