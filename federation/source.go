package federation

import (
	"sync"

	"google.golang.org/protobuf/proto"
)

// SnapshotSource gives readers the newest snapshot without a lock on the data
// path. The watch cache implements it; StaticSource does for tests and tools.
type SnapshotSource interface {
	// Snapshot returns the newest snapshot. It is never nil.
	Snapshot() *Snapshot
	// Changed returns a channel that is closed when a snapshot newer than
	// the one Snapshot returned at the time of the call is published.
	Changed() <-chan struct{}
}

// Registry keeps leased records in etcd for as long as their owner runs: a
// gateway's Gateway record, a proxy's Endpoint record. The Registrar
// implements it.
type Registry interface {
	// Put sets the record at key; it is (re)written whenever the lease is
	// (re)created.
	Put(key string, msg proto.Message)
	// Delete withdraws the record at key.
	Delete(key string)
}

// StaticSource is a SnapshotSource whose snapshots are set by hand.
type StaticSource struct {
	mu      sync.Mutex
	snap    *Snapshot
	changed chan struct{}
}

// NewStaticSource returns a source that serves snap (nil means empty).
func NewStaticSource(snap *Snapshot) *StaticSource {
	if snap == nil {
		snap = NewSnapshot(0, nil)
	}
	return &StaticSource{snap: snap, changed: make(chan struct{})}
}

// Snapshot implements SnapshotSource.
func (s *StaticSource) Snapshot() *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

// Changed implements SnapshotSource.
func (s *StaticSource) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Set publishes snap and wakes everyone waiting on Changed.
func (s *StaticSource) Set(snap *Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap = snap
	close(s.changed)
	s.changed = make(chan struct{})
}
