package federation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/prometheus/client_golang/prometheus"

	clientv3 "github.com/strait-mesh/strait/internal/etcdclient"
)

// Source is one etcd the cache watches. Most deployments have one; a
// federation whose regions must not share a quorum gives each cluster its
// own etcd, and gateways watch them all and merge them.
type Source struct {
	// Name identifies the source in logs, metrics and the snapshot file.
	// Zero means "etcd" when it is the only source; several sources need
	// unique names.
	Name string
	// Client is the source's etcd client.
	Client *clientv3.Client
}

// DefaultPageSize is the number of keys per page of a cache's list. At
// 1,000 clusters (403,000 keys) one client listed the keyspace in 44.6 s
// with pages of 1,000 keys and in 5.3 s with pages of 10,000, and a cache
// synced in 50-56 s and 14 s (docs/scale.md): every page is a Range at
// the listed revision, and fewer pages cost fewer round trips and less
// work per key. A page holds the keys and values of its records: 1.4 MiB at
// 10,000 records of the simulated federation; etcd's request limit
// (--max-request-bytes) bounds what a client sends, not a Range's
// response, whose gRPC limit on both sides is 2 GiB. Records are at most
// MaxRecordSize each: lower PageSize where records are large.
const DefaultPageSize = 10_000

// CacheConfig configures a Cache.
type CacheConfig struct {
	// Sources are the etcds to watch, at least one. When several hold the
	// same key, the first source in this list wins.
	Sources []Source
	// Keyspace is the keyspace to watch. Zero means DefaultPrefix.
	Keyspace Keyspace
	// SnapshotPath is a file where each new snapshot is persisted, and read
	// back at start so that a process started during an etcd outage still
	// routes. Empty disables persistence.
	SnapshotPath string
	// PersistDelay debounces persistence: a burst of changes is written
	// once. Zero means 500ms.
	PersistDelay time.Duration
	// FallbackAfter is how long Run waits for every source to be listed
	// before it declares the cache synced anyway, serving the snapshot file
	// or the sources that did answer. Zero means 3s.
	FallbackAfter time.Duration
	// PageSize is the number of keys per page of a list. Zero means
	// DefaultPageSize.
	PageSize int64
	// RetryMin and RetryMax bound the jittered exponential backoff between
	// reconnection attempts. Zero means 100ms and 10s.
	RetryMin, RetryMax time.Duration
	// ProgressInterval is how often the cache asks etcd for a progress
	// notification on its watches. A watch that hears nothing (no event, no
	// progress) for three intervals is restarted: this catches a stuck
	// stream even when the client itself is cut off. Zero means 5s;
	// negative disables it.
	ProgressInterval time.Duration
	// GatewayStaleAfter withdraws a gateway whose record has not been
	// written for this long while its source is otherwise heard from: a
	// health signal that, unlike lease expiry, does not restart when etcd
	// elects a new leader (etcd#9395). It only counts time while the source
	// answers, so an etcd outage withdraws nobody. It needs every gateway's
	// registrar to rewrite its record with RegistrarConfig.Heartbeat, which
	// is off by default (each rewrite is a raft entry): set it to several
	// heartbeats. Zero disables it.
	GatewayStaleAfter time.Duration
	// Logger receives the cache's logs. Nil discards them.
	Logger *slog.Logger
	// Metrics registers the cache's metrics. Nil means do not register.
	Metrics prometheus.Registerer
}

func (c *CacheConfig) populate() {
	for i := range c.Sources {
		if c.Sources[i].Name == "" && len(c.Sources) == 1 {
			c.Sources[i].Name = "etcd"
		}
	}
	if c.PersistDelay == 0 {
		c.PersistDelay = 500 * time.Millisecond
	}
	if c.FallbackAfter == 0 {
		c.FallbackAfter = 3 * time.Second
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.RetryMin == 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 10 * time.Second
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

func (c *CacheConfig) validate() error {
	var errs *multierror.Error
	if len(c.Sources) == 0 {
		errs = multierror.Append(errs, errors.New("at least one source is required"))
	}
	names := map[string]bool{}
	for i, s := range c.Sources {
		if s.Name == "" {
			errs = multierror.Append(errs, fmt.Errorf("source %d has no name", i))
		} else if names[s.Name] {
			errs = multierror.Append(errs, fmt.Errorf("source name %q is not unique", s.Name))
		}
		names[s.Name] = true
		if s.Client == nil {
			errs = multierror.Append(errs, fmt.Errorf("source %q has no client", s.Name))
		}
	}
	if c.PageSize < 0 {
		errs = multierror.Append(errs, errors.New("page size is negative"))
	}
	if c.RetryMin <= 0 || c.RetryMax < c.RetryMin {
		errs = multierror.Append(errs, fmt.Errorf("retry backoff %s-%s is not a range", c.RetryMin, c.RetryMax))
	}
	if c.GatewayStaleAfter < 0 {
		errs = multierror.Append(errs, errors.New("gateway staleness must not be negative"))
	}
	if c.PersistDelay < 0 || c.FallbackAfter < 0 {
		errs = multierror.Append(errs, errors.New("persist delay and fallback must not be negative"))
	}
	if err := errs.ErrorOrNil(); err != nil {
		return fmt.Errorf("federation: cache config: %w", err)
	}
	return nil
}

// Cache is the watch cache every gateway and proxy routes from. It lists the
// keyspace of each source, then watches it from the listed revision, and
// publishes an immutable Snapshot after every change. Readers take the
// current snapshot with an atomic load: they never wait for the cache, and
// the cache never waits for them.
//
// The cache survives etcd faults: a watch that fails is resumed with
// jittered backoff, a compacted watch is re-listed and diffed (unchanged
// records keep their identity), and while etcd is unreachable the last
// snapshot keeps serving. With SnapshotPath set, snapshots are also
// persisted, and a cache started while etcd is down serves the last one.
//
// Records that fail to decode or validate are skipped, logged once per key
// revision and counted in strait_federation_invalid_records_total; the last
// valid value of that key is kept.
//
// With one source a snapshot's Revision is that etcd's revision; with
// several it is the sum of theirs, which grows with every change.
type Cache struct {
	cfg     CacheConfig
	metrics *cacheMetrics
	sources []*source

	state atomic.Pointer[published]
	// publishMu serializes publish, which alone uses builder.
	publishMu sync.Mutex
	builder   *snapshotBuilder
	dirty     chan struct{} // buffered(1): some source changed
	persist   chan struct{} // buffered(1): a snapshot awaits persistence

	started    time.Time
	fromDisk   atomic.Bool
	synced     chan struct{}
	syncedOnce sync.Once
	running    atomic.Bool
}

// published is what readers load: a snapshot and the channel closed when
// it is replaced.
type published struct {
	snap    *Snapshot
	changed chan struct{}
	stale   []string // gateway keys left out as stale, sorted
	// listed and fromDisk say whether the snapshot holds a source's
	// listing, or records of the snapshot file.
	listed, fromDisk bool
	// rejected maps the keys of the endpoints the snapshot rejected to
	// their mod revision (counted once each).
	rejected map[string]int64
}

var _ SnapshotSource = (*Cache)(nil)

// NewCache returns a cache; call Run to start it.
func NewCache(cfg CacheConfig) (*Cache, error) {
	cfg.Sources = slices.Clone(cfg.Sources)
	cfg.populate()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Cache{
		cfg:     cfg,
		dirty:   make(chan struct{}, 1),
		persist: make(chan struct{}, 1),
		synced:  make(chan struct{}),
		started: time.Now(),
		builder: newSnapshotBuilder(cfg.Keyspace),
	}
	for i, s := range cfg.Sources {
		c.sources = append(c.sources, newSource(i, s))
	}
	c.metrics = newCacheMetrics(func() float64 { return c.Staleness().Seconds() }, c.lastSyncUnix)
	if err := c.metrics.register(cfg.Metrics); err != nil {
		return nil, err
	}
	c.state.Store(&published{snap: NewSnapshot(0, nil), changed: make(chan struct{})})
	return c, nil
}

// Snapshot implements SnapshotSource: the newest snapshot, never nil.
func (c *Cache) Snapshot() *Snapshot { return c.state.Load().snap }

// Changed implements SnapshotSource. Call it before Snapshot: the channel
// is closed when a snapshot newer than the current one is published.
func (c *Cache) Changed() <-chan struct{} { return c.state.Load().changed }

// Synced is closed once the cache serves a complete view: every source has
// been listed, or FallbackAfter passed and the cache serves what it has
// (the snapshot file, or the sources that answered).
func (c *Cache) Synced() <-chan struct{} { return c.synced }

// FromDisk reports whether the current snapshot still includes records read
// from the snapshot file rather than from etcd.
func (c *Cache) FromDisk() bool { return c.fromDisk.Load() }

// Staleness is how long ago the least recently heard source was last heard
// from. It grows while any source is unreachable.
func (c *Cache) Staleness() time.Duration {
	oldest := time.Now()
	for _, s := range c.sources {
		t := s.lastHeard.Load()
		if t == 0 {
			t = c.started.UnixNano()
		}
		if ht := time.Unix(0, t); ht.Before(oldest) {
			oldest = ht
		}
	}
	return time.Since(oldest)
}

// lastSyncUnix is the Unix time (seconds) at which every source was last
// heard from, or 0 if one never was.
func (c *Cache) lastSyncUnix() float64 {
	var oldest int64
	for _, s := range c.sources {
		t := s.lastHeard.Load()
		if t == 0 {
			return 0
		}
		if oldest == 0 || t < oldest {
			oldest = t
		}
	}
	return float64(oldest) / 1e9
}

// SourceStatus describes one source of a cache.
type SourceStatus struct {
	Name string
	// Listed is true once the source has been listed at least once.
	Listed bool
	// Revision is the source's revision the cache has caught up with.
	Revision int64
	// LastHeard is when the source last sent an event or progress
	// notification; zero if never.
	LastHeard time.Time
	// Records counts the source's valid records.
	Records int
}

// Sources reports the state of every source, in configuration order: a
// source that is not listed, or not heard from for long, is degraded.
func (c *Cache) Sources() []SourceStatus {
	out := make([]SourceStatus, len(c.sources))
	for i, s := range c.sources {
		s.mu.Lock()
		out[i] = SourceStatus{Name: s.name, Listed: s.listed, Revision: s.rev, Records: len(s.entries)}
		s.mu.Unlock()
		if t := s.lastHeard.Load(); t != 0 {
			out[i].LastHeard = time.Unix(0, t)
		}
	}
	return out
}

// Run watches every source until ctx is cancelled, then persists the last
// snapshot and returns ctx.Err(). It may be called once.
func (c *Cache) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("federation: cache: Run called twice")
	}
	if c.cfg.SnapshotPath != "" {
		c.loadDisk()
	}
	var wg sync.WaitGroup
	for _, s := range c.sources {
		wg.Go(func() { c.runSource(ctx, s) })
	}
	wg.Go(func() { c.runPublisher(ctx) })
	if c.cfg.SnapshotPath != "" {
		wg.Go(func() { c.runPersister(ctx) })
	}
	wg.Go(func() { c.runFallback(ctx) })
	wg.Wait()
	return ctx.Err()
}
