package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/proto"
)

// diskFormat is the version of the snapshot file format.
const diskFormat = 1

// diskSnapshot is the snapshot file: the raw records, re-validated on load.
type diskSnapshot struct {
	Format   int   `json:"format"`
	Revision int64 `json:"revision"`
	// Revisions are each source's revision, by source name.
	Revisions map[string]int64 `json:"revisions"`
	SavedAt   time.Time        `json:"savedAt"`
	Records   []diskRecord     `json:"records"`
}

type diskRecord struct {
	Source      string `json:"source"`
	Key         string `json:"key"`
	ModRevision int64  `json:"modRevision"`
	Value       []byte `json:"value"`
}

// runPersister writes the newest snapshot to SnapshotPath, at most once per
// PersistDelay, and once more when ctx is cancelled if one is pending.
func (c *Cache) runPersister(ctx context.Context) {
	var last *published
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.persist:
		}
		sleepCtx(ctx.Done(), c.cfg.PersistDelay)
		cur := c.state.Load()
		if cur == last {
			continue
		}
		if err := c.writeDisk(cur); err != nil {
			c.metrics.persistErrors.Inc()
			c.cfg.Logger.Warn("federation: persist snapshot", logPath, c.cfg.SnapshotPath, logError, err)
			continue
		}
		c.metrics.persists.Inc()
		last = cur
	}
}

// writeDisk writes the sources' records atomically: a temporary file in
// the same directory, fsynced, renamed over the old one, and the directory
// fsynced. They are at least as new as the snapshot p, which only decides
// whether anything is new.
func (c *Cache) writeDisk(p *published) error {
	ds := diskSnapshot{Format: diskFormat, SavedAt: time.Now().UTC()}
	ds.Revisions = map[string]int64{}
	seen := map[string]bool{}
	var msgs []proto.Message
	for _, s := range c.sources {
		s.mu.Lock()
		ds.Revisions[s.name] = s.rev
		ds.Revision += s.rev
		if ds.Records == nil {
			ds.Records = make([]diskRecord, 0, len(s.entries))
		}
		for k, e := range s.entries {
			if len(c.sources) > 1 {
				if seen[k] {
					continue
				}
				seen[k] = true
			}
			// The cache keeps messages, not values: they are encoded
			// below, outside the lock (messages never change).
			ds.Records = append(ds.Records, diskRecord{Source: s.name, Key: k, ModRevision: e.modRev})
			msgs = append(msgs, e.message())
		}
		s.mu.Unlock()
	}
	for i, m := range msgs {
		v, err := EncodeRecord(m)
		if err != nil {
			return err
		}
		ds.Records[i].Value = v
	}
	if ds.Revision < p.snap.Revision() {
		ds.Revision = p.snap.Revision()
	}
	data, err := json.Marshal(ds)
	if err != nil {
		return fmt.Errorf("federation: encode snapshot: %w", err)
	}
	return writeFileAtomic(c.cfg.SnapshotPath, data)
}

func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("federation: snapshot dir: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("federation: snapshot temp file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("federation: write %s: %w", f.Name(), err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("federation: fsync %s: %w", f.Name(), err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("federation: close %s: %w", f.Name(), err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("federation: rename snapshot: %w", err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// loadDisk reads SnapshotPath, if it exists, into sources that hold nothing
// yet, and publishes it. Records are validated again; invalid ones are
// skipped and counted.
func (c *Cache) loadDisk() {
	data, err := os.ReadFile(c.cfg.SnapshotPath)
	if os.IsNotExist(err) {
		return
	}
	log := c.cfg.Logger.With(logPath, c.cfg.SnapshotPath)
	if err != nil {
		log.Warn("federation: read snapshot file", logError, err)
		return
	}
	var ds diskSnapshot
	if err := json.Unmarshal(data, &ds); err != nil || ds.Format != diskFormat {
		log.Warn("federation: snapshot file is unreadable, ignoring it", logError, err)
		return
	}
	byName := map[string]*source{}
	for _, s := range c.sources {
		byName[s.name] = s
	}
	loaded := 0
	for _, r := range ds.Records {
		s := byName[r.Source]
		if s == nil {
			s = c.sources[0]
		}
		s.mu.Lock()
		e, err := s.decode(c.cfg.Keyspace, r.Key, r.Value, r.ModRevision)
		s.mu.Unlock()
		if err != nil {
			kind, reason := invalidLabels(err)
			c.metrics.invalid.WithLabelValues(kind, reason).Inc()
			log.Warn("federation: skipping invalid record in snapshot file", logKey, r.Key, logError, err)
			continue
		}
		s.mu.Lock()
		if !s.listed {
			s.put(r.Key, e)
			s.fromDisk = true
			loaded++
		}
		s.mu.Unlock()
	}
	if loaded == 0 {
		return
	}
	for _, s := range c.sources {
		// Staleness counts from when the file was saved.
		s.lastHeard.CompareAndSwap(0, ds.SavedAt.UnixNano())
		s.mu.Lock()
		if !s.listed {
			s.rev = ds.Revisions[s.name]
		}
		s.mu.Unlock()
	}
	log.Info("federation: loaded snapshot file", logRecords, loaded, logRevision, ds.Revision, logSavedAt, ds.SavedAt)
	c.publish()
	// The file already holds this snapshot: do not write it back.
	select {
	case <-c.persist:
	default:
	}
}
