package trust

import "sync"

// notifier broadcasts "something changed" to any number of waiters: Changed
// returns a channel that is closed at the next change. Waiters take a new
// channel after each close, so a slow waiter never blocks a change and never
// misses the fact that one happened.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// Changed returns a channel closed at the next call to notify.
func (n *notifier) Changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}
