package wan

import (
	"net"
	"net/netip"
	"slices"
)

// SourceShape shapes the traffic of the clients in From (the sending
// cluster's subnet, say) instead of the link's default shaping, so that one
// link in front of a cluster can give each remote cluster its own latency.
type SourceShape struct {
	From    netip.Prefix `json:"from"`
	Forward Shape        `json:"forward"`
	Reverse Shape        `json:"reverse"`
}

// state is the link's shaping and partitions; it is replaced, never mutated.
type state struct {
	shapes  [2]Shape // default: [0] forward, [1] reverse
	sources []SourceShape
	all     bool           // the whole link is partitioned
	cut     []netip.Prefix // partitioned client prefixes
}

func (s *state) clone() *state {
	n := *s
	n.sources = slices.Clone(s.sources)
	n.cut = slices.Clone(s.cut)
	return &n
}

// shape returns the shaping of dir for a client at src.
func (s *state) shape(dir Direction, src netip.Addr) Shape {
	for _, r := range s.sources {
		if r.From.Contains(src) {
			if dir == Reverse {
				return r.Reverse
			}
			return r.Forward
		}
	}
	if dir == Reverse {
		return s.shapes[1]
	}
	return s.shapes[0]
}

// blocked reports whether traffic of a client at src is partitioned.
func (s *state) blocked(src netip.Addr) bool {
	if s.all {
		return true
	}
	for _, p := range s.cut {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// current returns the state.
func (l *Link) current() *state { return l.st.Load() }

// watch returns the state and a channel closed at its next change.
func (l *Link) watch() (*state, <-chan struct{}) {
	l.stMu.Lock()
	defer l.stMu.Unlock()
	return l.st.Load(), l.changed
}

// update applies fn to a copy of the state, publishes it and wakes watchers.
func (l *Link) update(fn func(*state)) {
	l.stMu.Lock()
	defer l.stMu.Unlock()
	next := l.st.Load().clone()
	fn(next)
	l.st.Store(next)
	close(l.changed)
	l.changed = make(chan struct{})
}

// addrOf returns the IP of a TCP or UDP address.
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
