package wan

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Link is one emulated WAN hop in front of a set of backends. Create it with
// NewLink, serve with Run; the control methods are safe for concurrent use
// before, during and after Run.
type Link struct {
	cfg LinkConfig
	log *slog.Logger

	ln net.Listener   // nil when TCP is disabled
	pc net.PacketConn // nil when UDP is disabled

	stMu    sync.Mutex
	st      atomic.Pointer[state]
	changed chan struct{} // closed and replaced at every state change

	backends atomic.Pointer[[]string]
	next     atomic.Uint64 // round-robin cursor

	stats counters
	sched *scheduler
	bufs  sync.Pool // TCP chunk buffers

	runOnce   sync.Once
	ran       atomic.Bool
	done      chan struct{} // closed when Run stops serving
	closeOnce sync.Once
	wg        sync.WaitGroup // every goroutine Run started

	mu    sync.Mutex
	conns map[*tcpConn]struct{}
	flows map[string]*udpFlow
}

// NewLink validates cfg and binds the link's sockets, so Addr is known before
// Run. Call Run to serve, or Close to release the sockets of a link that will
// not run.
func NewLink(cfg LinkConfig) (*Link, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := &Link{
		cfg:   cfg,
		log:   cfg.Logger.With(logLink, cfg.Name),
		sched: newScheduler(),
		done:  make(chan struct{}),
		conns: make(map[*tcpConn]struct{}),
		flows: make(map[string]*udpFlow),
	}
	l.st.Store(&state{shapes: [2]Shape{cfg.forward(), cfg.reverse()}, sources: slices.Clone(cfg.Sources)})
	l.changed = make(chan struct{})
	backends := append([]string(nil), cfg.Backends...)
	l.backends.Store(&backends)

	ctx := context.Background()
	udpAddr := cfg.Listen
	if !cfg.DisableTCP {
		ln, err := cfg.Net.Listen(ctx, "tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("wan: listen tcp %s: %w", cfg.Listen, err)
		}
		l.ln = ln
		udpAddr = ln.Addr().String()
	}
	if !cfg.DisableUDP {
		pc, err := cfg.Net.ListenPacket(ctx, "udp", udpAddr)
		if err != nil {
			if l.ln != nil {
				l.ln.Close()
			}
			return nil, fmt.Errorf("wan: listen udp %s: %w", udpAddr, err)
		}
		l.pc = pc
	}
	return l, nil
}

// Addr returns the address the link listens on (TCP and UDP share the port).
func (l *Link) Addr() net.Addr {
	if l.ln != nil {
		return l.ln.Addr()
	}
	return l.pc.LocalAddr()
}

// Name returns the link's name.
func (l *Link) Name() string { return l.cfg.Name }

// Run serves until ctx ends, then closes every socket and connection, waits
// for all of its goroutines and returns ctx.Err(). It may be called once.
func (l *Link) Run(ctx context.Context) error {
	started := false
	l.runOnce.Do(func() { started = true })
	if !started {
		return ErrAlreadyRunning
	}
	l.ran.Store(true)
	l.log.Info("wan link up", "listen", l.Addr().String(), "backends", *l.backends.Load(),
		"forward", l.Shape(Forward).String(), "reverse", l.Shape(Reverse).String())

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	l.goTrack(func() { l.sched.run(l.done) })
	if l.ln != nil {
		l.goTrack(func() { l.acceptLoop(runCtx) })
	}
	if l.pc != nil {
		l.goTrack(func() { l.udpLoop(runCtx) })
		l.goTrack(func() { l.expireLoop(runCtx) })
	}
	select {
	case <-ctx.Done():
	case <-l.done: // Close was called
	}
	cancel()
	l.shutdown()
	l.wg.Wait()
	l.log.Info("wan link down")
	return ctx.Err()
}

// Close stops a running link (Run then returns) or releases the sockets of
// one that never ran. It is idempotent.
func (l *Link) Close() error {
	l.shutdown()
	if !l.ran.Load() {
		l.runOnce.Do(func() {})
	}
	return nil
}

func (l *Link) shutdown() {
	l.closeOnce.Do(func() {
		close(l.done)
		if l.ln != nil {
			l.ln.Close()
		}
		if l.pc != nil {
			l.pc.Close()
		}
		l.mu.Lock()
		for c := range l.conns {
			c.close(false)
		}
		for _, f := range l.flows {
			f.conn.Close()
		}
		l.mu.Unlock()
	})
}

func (l *Link) goTrack(fn func()) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		fn()
	}()
}

// Partition cuts the whole link: datagrams are dropped in both directions
// and TCP follows the configured PartitionMode until Heal.
func (l *Link) Partition() {
	changed := false
	l.update(func(s *state) { changed, s.all = !s.all, true })
	if !changed {
		return
	}
	l.stats.partitions.Add(1)
	l.log.Info("wan link partitioned")
	l.resetBlocked()
}

// PartitionFrom cuts the link for the clients in from only (a remote
// cluster's subnet), as Partition does for all.
func (l *Link) PartitionFrom(from netip.Prefix) {
	from = from.Masked()
	changed := false
	l.update(func(s *state) {
		if !slices.Contains(s.cut, from) {
			s.cut = append(s.cut, from)
			changed = true
		}
	})
	if !changed {
		return
	}
	l.stats.partitions.Add(1)
	l.log.Info("wan link partitioned from", "from", from.String())
	l.resetBlocked()
}

// resetBlocked resets the TCP connections of blocked clients in Refuse mode.
func (l *Link) resetBlocked() {
	if l.cfg.PartitionMode != Refuse {
		return
	}
	st := l.current()
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		if st.blocked(c.src) {
			c.close(true)
		}
	}
}

// Heal ends every partition, whole-link and per-source.
func (l *Link) Heal() {
	changed := false
	l.update(func(s *state) {
		changed = s.all || len(s.cut) > 0
		s.all, s.cut = false, nil
	})
	if changed {
		l.log.Info("wan link healed")
	}
}

// HealFrom ends the partition of the clients in from.
func (l *Link) HealFrom(from netip.Prefix) {
	from = from.Masked()
	l.update(func(s *state) {
		s.cut = slices.DeleteFunc(s.cut, func(p netip.Prefix) bool { return p == from })
	})
	l.log.Info("wan link healed from", "from", from.String())
}

// Partitioned reports whether the whole link is partitioned.
func (l *Link) Partitioned() bool { return l.current().all }

// SetShape changes the default shaping of one or both directions; it applies
// to datagrams and chunks read from then on.
func (l *Link) SetShape(dir Direction, s Shape) error {
	if err := s.validate(dir.String()); err != nil {
		return err
	}
	l.update(func(st *state) {
		if dir != Reverse {
			st.shapes[0] = s
		}
		if dir != Forward {
			st.shapes[1] = s
		}
	})
	l.log.Info("wan link reshaped", "direction", dir.String(), logShape, s.String())
	return nil
}

// SetSourceShape sets the shaping of the clients in ss.From, replacing the
// entry for the same prefix or adding one (entries are matched in order).
func (l *Link) SetSourceShape(ss SourceShape) error {
	if err := ss.validate(); err != nil {
		return err
	}
	ss.From = ss.From.Masked()
	l.update(func(st *state) {
		for i := range st.sources {
			if st.sources[i].From == ss.From {
				st.sources[i] = ss
				return
			}
		}
		st.sources = append(st.sources, ss)
	})
	l.log.Info("wan link reshaped", "from", ss.From.String(), "forward", ss.Forward.String(), "reverse", ss.Reverse.String())
	return nil
}

// SetDelay sets the default one-way delay of both directions, keeping jitter
// and loss.
func (l *Link) SetDelay(d time.Duration) error {
	for _, dir := range []Direction{Forward, Reverse} {
		s := l.Shape(dir)
		s.Delay = d
		if err := l.SetShape(dir, s); err != nil {
			return err
		}
	}
	return nil
}

// Shape returns the default shaping of one direction (Both reads Forward).
func (l *Link) Shape(dir Direction) Shape {
	st := l.current()
	if dir == Reverse {
		return st.shapes[1]
	}
	return st.shapes[0]
}

// ShapeFor returns the shaping of dir for a client at src.
func (l *Link) ShapeFor(dir Direction, src netip.Addr) Shape {
	return l.current().shape(dir, src)
}

// SetBackends replaces the backends for new TCP connections and UDP flows.
func (l *Link) SetBackends(backends []string) error {
	if len(backends) == 0 {
		return fmt.Errorf("%w: no backends", ErrInvalidConfig)
	}
	for _, b := range backends {
		if err := validHostPort(b); err != nil {
			return fmt.Errorf("%w: backend %q: %w", ErrInvalidConfig, b, err)
		}
	}
	bs := append([]string(nil), backends...)
	l.backends.Store(&bs)
	return nil
}

// pickBackends returns the backends in the order to try them for a new
// connection or flow.
func (l *Link) pickBackends() []string {
	bs := *l.backends.Load()
	start := int(l.next.Add(1)-1) % len(bs)
	out := make([]string, 0, len(bs))
	for i := range bs {
		out = append(out, bs[(start+i)%len(bs)])
	}
	return out
}

// releaseAt returns when a unit of a client at src read now in direction dir
// is delivered, and whether it is lost.
func (l *Link) releaseAt(dir Direction, udp bool, src netip.Addr) (time.Time, bool) {
	s := l.current().shape(dir, src)
	if udp && s.Loss > 0 && rand.Float64() < s.Loss {
		return time.Time{}, true
	}
	d := s.Delay
	if s.Jitter > 0 {
		d += time.Duration(rand.Int64N(int64(2*s.Jitter)+1)) - s.Jitter
		d = max(d, 0)
	}
	return time.Now().Add(d), false
}

// Flap partitions the whole link for down, heals it for up, and repeats
// until ctx ends; it then heals the link and returns ctx.Err(). It is the
// flapping fault of reliability test T10 (for instance 5 s on, 5 s off).
func (l *Link) Flap(ctx context.Context, down, up time.Duration) error {
	defer l.Heal()
	timer := time.NewTimer(down)
	defer timer.Stop()
	for {
		l.Partition()
		timer.Reset(down)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		l.Heal()
		timer.Reset(up)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
	}
}
