package federation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	clientv3 "github.com/strait-mesh/strait/internal/etcdclient"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// errWatchStalled restarts a watch that heard nothing for too long.
var errWatchStalled = errors.New("watch heard nothing for three progress intervals")

// errWatchClosed restarts a watch whose channel closed without an error.
var errWatchClosed = errors.New("watch channel closed")

// entry is one valid record of a source, and the sum of the value it came
// from (48 bytes: 400,000 of them at 100,000 exports).
type entry struct {
	rec
	sum valueSum
}

func newEntry(r rec, value []byte) *entry {
	return &entry{rec: r, sum: sumOf(value)}
}

// source is the cache's view of one etcd.
type source struct {
	idx  int
	name string
	cli  *clientv3.Client

	mu      sync.Mutex
	entries map[string]*entry // valid records by key
	// gateways holds, for the gateway records of entries, when each was
	// last written (Unix nanoseconds, as observed by the cache): a
	// rewrite of the same value, a gateway's heartbeat, only moves this.
	gateways map[string]*atomic.Int64
	// changed holds the keys whose entry changed since the last publish:
	// the publisher rebuilds only what they touch.
	changed  map[string]struct{}
	invalid  map[string]int64 // key → mod revision already logged as invalid
	intern   *interner        // shares what repeats across records
	rev      int64            // revision caught up with
	listed   bool
	fromDisk bool // entries were loaded from the snapshot file

	lastHeard atomic.Int64 // Unix nanoseconds
}

func newSource(idx int, s Source) *source {
	return &source{
		idx:      idx,
		name:     s.Name,
		cli:      s.Client,
		entries:  map[string]*entry{},
		gateways: map[string]*atomic.Int64{},
		changed:  map[string]struct{}{},
		invalid:  map[string]int64{},
		intern:   newInterner(),
	}
}

// put sets the entry of key and notes the change. The caller holds s.mu.
func (s *source) put(key string, e *entry) {
	s.entries[key] = e
	if _, ok := e.msg.(*straitv1.Gateway); ok {
		w := new(atomic.Int64)
		w.Store(time.Now().UnixNano())
		s.gateways[key] = w
	} else {
		delete(s.gateways, key)
	}
	s.changed[key] = struct{}{}
}

// remove removes the entry of key and notes the change. The caller holds
// s.mu.
func (s *source) remove(key string) {
	delete(s.entries, key)
	delete(s.gateways, key)
	s.changed[key] = struct{}{}
}

// rewritten notes that the record of key was written again with the same
// value. The caller holds s.mu.
func (s *source) rewritten(key string) {
	if w, ok := s.gateways[key]; ok {
		w.Store(time.Now().UnixNano())
	}
}

func (s *source) heard() { s.lastHeard.Store(time.Now().UnixNano()) }

// runSource lists, then watches one source until ctx is cancelled,
// reconnecting with jittered backoff and re-listing after compaction.
func (c *Cache) runSource(ctx context.Context, s *source) {
	bo := backoff{min: c.cfg.RetryMin, max: c.cfg.RetryMax}
	log := c.cfg.Logger.With(logSource, s.name)
	needList := true
	for ctx.Err() == nil {
		if needList {
			if err := c.relist(ctx, s); err != nil {
				if ctx.Err() != nil {
					return
				}
				d := bo.next()
				log.Warn("federation: list failed", logError, err, logRetryIn, d)
				sleepCtx(ctx.Done(), d)
				continue
			}
			needList = false
		}
		progressed, err := c.watch(ctx, s)
		if ctx.Err() != nil {
			return
		}
		if progressed {
			bo.reset()
		}
		c.metrics.watchRestarts.WithLabelValues(s.name).Inc()
		if errors.Is(err, rpctypes.ErrCompacted) {
			log.Info("federation: watch compacted, listing again", logRevision, s.revision())
			needList = true
			continue
		}
		d := bo.next()
		log.Warn("federation: watch failed, resuming", logError, err, logRevision, s.revision(), logRetryIn, d)
		sleepCtx(ctx.Done(), d)
	}
}

func (s *source) revision() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev
}

// relist lists the keyspace at one revision, page by page, and diffs it
// against what the source holds: unchanged records keep their entry (and
// identity), changed ones are replaced, missing ones removed. Each page is
// decoded as it arrives: the cache never holds the whole listing's raw
// values at once.
func (c *Cache) relist(ctx context.Context, s *source) error {
	next := make(map[string]*entry)
	rev, err := listPages(ctx, s.cli, c.cfg.Keyspace, c.cfg.PageSize, func(kvs []*mvccpb.KeyValue) {
		s.mu.Lock()
		c.listPage(s, next, kvs)
		s.mu.Unlock()
	})
	if err != nil {
		return err
	}
	c.metrics.relists.WithLabelValues(s.name).Inc()
	s.heard()
	c.finishList(s, next, rev)
	return nil
}

// applyList makes a listing at rev the source's records.
func (c *Cache) applyList(s *source, kvs []*mvccpb.KeyValue, rev int64) {
	next := make(map[string]*entry, len(kvs))
	s.mu.Lock()
	c.listPage(s, next, kvs)
	s.mu.Unlock()
	c.finishList(s, next, rev)
}

// listPage adds one page of a listing to next: the entry the source holds
// for a key when its value did not change, else the key's new entry (or,
// when the new value is invalid, the last good one). The caller holds s.mu.
func (c *Cache) listPage(s *source, next map[string]*entry, kvs []*mvccpb.KeyValue) {
	for _, kv := range kvs {
		key := string(kv.Key)
		if old, ok := s.entries[key]; ok && old.sum == sumOf(kv.Value) {
			// Same bytes, same record: keep its identity.
			if old.modRev != kv.ModRevision {
				s.rewritten(key)
			}
			next[key] = old
			continue
		}
		if e := c.decode(s, key, kv); e != nil {
			next[key] = e
		} else if old, ok := s.entries[key]; ok {
			next[key] = old // keep the last known good value
		}
	}
}

// finishList makes next, a whole listing at rev, the source's records.
func (c *Cache) finishList(s *source, next map[string]*entry, rev int64) {
	s.mu.Lock()
	for key := range s.invalid {
		if _, ok := next[key]; !ok {
			delete(s.invalid, key)
		}
	}
	for key, e := range s.entries {
		if next[key] != e {
			s.remove(key)
		}
	}
	for key, e := range next {
		if s.entries[key] != e {
			s.put(key, e)
		}
	}
	s.rev = rev
	s.listed = true
	s.fromDisk = false
	s.mu.Unlock()
	c.markDirty()
}

// listAll reads every key of the keyspace at one revision, page by page.
func listAll(ctx context.Context, cli *clientv3.Client, ks Keyspace, pageSize int64) ([]*mvccpb.KeyValue, int64, error) {
	var kvs []*mvccpb.KeyValue
	rev, err := listPages(ctx, cli, ks, pageSize, func(page []*mvccpb.KeyValue) { kvs = append(kvs, page...) })
	if err != nil {
		return nil, 0, err
	}
	return kvs, rev, nil
}

// listPages reads every key of the keyspace at one revision, pageSize keys
// at a time, handing each page to f, and returns the revision.
func listPages(ctx context.Context, cli *clientv3.Client, ks Keyspace, pageSize int64, f func([]*mvccpb.KeyValue)) (int64, error) {
	prefix := ks.Root()
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := cli.Get(ctx, from, opts...)
		if err != nil {
			return 0, fmt.Errorf("federation: list %s at revision %d: %w", prefix, rev, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		f(resp.Kvs)
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// watch follows the source from its revision until the watch fails. It
// reports whether it received anything, and why it stopped.
func (c *Cache) watch(ctx context.Context, s *source) (bool, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	start := s.revision() + 1
	// Watch blocks until the stream is established; on a dead path that
	// can be forever, so the heartbeat bound applies to it as well.
	var stalled atomic.Bool
	if c.cfg.ProgressInterval > 0 {
		timer := time.AfterFunc(3*c.cfg.ProgressInterval, func() { stalled.Store(true); cancel() })
		defer timer.Stop()
		wch := s.cli.Watch(wctx, c.cfg.Keyspace.Root(), clientv3.WithPrefix(), clientv3.WithRev(start))
		if !timer.Stop() && stalled.Load() {
			return false, fmt.Errorf("federation: watch from %d: %w", start, errWatchStalled)
		}
		return c.follow(ctx, wctx, cancel, s, start, wch)
	}
	wch := s.cli.Watch(wctx, c.cfg.Keyspace.Root(), clientv3.WithPrefix(), clientv3.WithRev(start))
	return c.follow(ctx, wctx, cancel, s, start, wch)
}

// follow applies a watch's responses until it fails, asking for progress
// notifications every ProgressInterval and giving up after three silent
// intervals.
func (c *Cache) follow(ctx, wctx context.Context, cancel context.CancelFunc, s *source, start int64, wch clientv3.WatchChan) (bool, error) {
	var tick <-chan time.Time
	if c.cfg.ProgressInterval > 0 {
		t := time.NewTicker(c.cfg.ProgressInterval)
		defer t.Stop()
		tick = t.C
	}
	// Progress requests block while the client reconnects its stream, so
	// they run beside the loop, each bounded by one interval.
	var requests sync.WaitGroup
	defer requests.Wait()
	defer cancel()
	progressed := false
	lastHeard := time.Now()
	for {
		select {
		case <-ctx.Done():
			return progressed, ctx.Err()
		case <-tick:
			if time.Since(lastHeard) > 3*c.cfg.ProgressInterval {
				return progressed, fmt.Errorf("federation: watch from %d: %w", start, errWatchStalled)
			}
			// The answer arrives on the watch channel as a progress
			// notification; an error here shows up as silence.
			requests.Go(func() {
				rctx, rcancel := context.WithTimeout(wctx, c.cfg.ProgressInterval)
				defer rcancel()
				_ = s.cli.RequestProgress(rctx)
			})
		case resp, ok := <-wch:
			if !ok {
				return progressed, errWatchClosed
			}
			if resp.CompactRevision != 0 {
				return progressed, fmt.Errorf("federation: watch from %d: %w", start, rpctypes.ErrCompacted)
			}
			if err := resp.Err(); err != nil {
				return progressed, fmt.Errorf("federation: watch from %d: %w", start, err)
			}
			lastHeard = time.Now()
			progressed = true
			s.heard()
			c.apply(s, resp)
		}
	}
}

// apply applies one watch response to the source.
func (c *Cache) apply(s *source, resp clientv3.WatchResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if resp.IsProgressNotify() {
		// Every event up to the header revision has been delivered.
		s.rev = max(s.rev, resp.Header.Revision)
		return
	}
	changed := false
	for _, ev := range resp.Events {
		key := string(ev.Kv.Key)
		s.rev = max(s.rev, ev.Kv.ModRevision)
		switch ev.Type {
		case clientv3.EventTypeDelete:
			if _, ok := s.entries[key]; ok {
				s.remove(key)
				changed = true
			}
			delete(s.invalid, key)
		case clientv3.EventTypePut:
			if old, ok := s.entries[key]; ok && old.sum == sumOf(ev.Kv.Value) {
				// A rewrite of the same value (a heartbeat) changes no
				// record: note when, and publish nothing.
				s.rewritten(key)
				continue
			}
			if e := c.decode(s, key, ev.Kv); e != nil {
				s.put(key, e)
				changed = true
			}
		}
	}
	if changed {
		c.markDirty()
	}
}

// decode decodes and validates one key-value (key is its key, as a
// string), or counts and logs it (once per key revision) and returns nil.
// The caller holds s.mu.
func (c *Cache) decode(s *source, key string, kv *mvccpb.KeyValue) *entry {
	e, err := s.decode(c.cfg.Keyspace, key, kv.Value, kv.ModRevision)
	if err != nil {
		c.countInvalid(s, key, kv.ModRevision, err)
		return nil
	}
	delete(s.invalid, key)
	return e
}

// decode decodes and validates a value into an entry that shares what
// repeats with the source's other records. The caller holds s.mu.
func (s *source) decode(ks Keyspace, key string, value []byte, modRev int64) (*entry, error) {
	r, err := DecodeRecord(ks, key, value)
	if err != nil {
		return nil, err
	}
	s.intern.compact(r.Info, r.Message)
	return newEntry(rec{key: key, msg: recMessage(r.Info, r.Message), modRev: modRev}, value), nil
}

// countInvalid counts and logs an invalid record, once per key revision.
// The caller holds s.mu.
func (c *Cache) countInvalid(s *source, key string, modRev int64, err error) {
	if s.invalid[key] == modRev {
		return
	}
	s.invalid[key] = modRev
	kind, reason := invalidLabels(err)
	c.metrics.invalid.WithLabelValues(kind, reason).Inc()
	c.cfg.Logger.Warn("federation: skipping invalid record", logSource, s.name, logKey, key,
		logKind, kind, logReason, reason, logRevision, modRev, logError, err)
}

// invalidLabels returns the kind and reason of a decode error, for metrics.
func invalidLabels(err error) (kind, reason string) {
	var ire *InvalidRecordError
	if errors.As(err, &ire) {
		kind, reason = string(ire.Kind), ire.Reason
	}
	if kind == "" {
		kind = "unknown"
	}
	return kind, reason
}
