package wan

import (
	"container/heap"
	"sync"
	"time"
)

// scheduler runs functions at given times, in time order and, for equal
// times, in the order they were added. One goroutine (run) fires them, so a
// function must not block.
type scheduler struct {
	mu    sync.Mutex
	items itemHeap
	seq   uint64
	wake  chan struct{}
}

type item struct {
	at  time.Time
	seq uint64
	fn  func()
}

type itemHeap []item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h itemHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)   { *h = append(*h, x.(item)) }
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = item{}
	*h = old[:len(old)-1]
	return it
}

func newScheduler() *scheduler {
	return &scheduler{wake: make(chan struct{}, 1)}
}

// add schedules fn at at.
func (s *scheduler) add(at time.Time, fn func()) {
	s.mu.Lock()
	s.seq++
	heap.Push(&s.items, item{at: at, seq: s.seq, fn: fn})
	first := s.items[0].seq == s.seq
	s.mu.Unlock()
	if first {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// run fires due functions until done is closed; pending ones are dropped.
func (s *scheduler) run(done <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []func()
	for {
		now := time.Now()
		s.mu.Lock()
		for len(s.items) > 0 && !s.items[0].at.After(now) {
			due = append(due, heap.Pop(&s.items).(item).fn)
		}
		wait := time.Hour
		if len(s.items) > 0 {
			wait = s.items[0].at.Sub(now)
		}
		s.mu.Unlock()
		for i, fn := range due {
			fn()
			due[i] = nil
		}
		due = due[:0]
		timer.Reset(wait)
		select {
		case <-done:
			return
		case <-s.wake:
		case <-timer.C:
		}
	}
}
