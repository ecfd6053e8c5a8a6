package proxy

import (
	"net"
	"sync"
)

// connSet owns the goroutines serving connections: it tracks the accepted
// connections so that a drain can wait for them or close them.
type connSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
	idleCh chan struct{} // closed when the set becomes empty after closing
}

func (s *connSet) init() { s.conns = map[net.Conn]struct{}{} }

// goServe runs serve(c) in a new goroutine unless the set is closed.
func (s *connSet) goServe(c net.Conn, serve func(net.Conn)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Go(func() {
		defer s.remove(c)
		serve(c)
	})
	return true
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if len(s.conns) == 0 && s.idleCh != nil {
		close(s.idleCh)
		s.idleCh = nil
	}
}

func (s *connSet) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// idle stops the set from taking connections and returns a channel closed
// once it is empty.
func (s *connSet) idle() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	ch := make(chan struct{})
	if len(s.conns) == 0 {
		close(ch)
		return ch
	}
	s.idleCh = ch
	return ch
}

// closeAll closes every tracked connection.
func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
}

// wait waits for every serving goroutine.
func (s *connSet) wait() { s.wg.Wait() }
