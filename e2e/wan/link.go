package wan

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
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

	shapes   atomic.Pointer[[2]Shape] // [0] forward, [1] reverse
	backends atomic.Pointer[[]string]
	next     atomic.Uint64 // round-robin cursor

	gate  gate
	stats counters
	sched *scheduler

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
	l.shapes.Store(&[2]Shape{cfg.forward(), cfg.reverse()})
	backends := append([]string(nil), cfg.Backends...)
	l.backends.Store(&backends)
	l.gate.init()

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

// Partition cuts the link: datagrams are dropped in both directions and TCP
// follows the configured PartitionMode until Heal.
func (l *Link) Partition() {
	if !l.gate.close() {
		return
	}
	l.stats.partitions.Add(1)
	l.log.Info("wan link partitioned")
	if l.cfg.PartitionMode == Refuse {
		l.mu.Lock()
		for c := range l.conns {
			c.close(true)
		}
		l.mu.Unlock()
	}
}

// Heal ends a partition.
func (l *Link) Heal() {
	if l.gate.open() {
		l.log.Info("wan link healed")
	}
}

// Partitioned reports whether the link is partitioned.
func (l *Link) Partitioned() bool { return l.gate.isClosed() }

// SetShape changes the shaping of one or both directions; it applies to
// datagrams and chunks read from then on.
func (l *Link) SetShape(dir Direction, s Shape) error {
	if err := s.validate(dir.String()); err != nil {
		return err
	}
	for {
		old := l.shapes.Load()
		next := *old
		if dir != Reverse {
			next[0] = s
		}
		if dir != Forward {
			next[1] = s
		}
		if l.shapes.CompareAndSwap(old, &next) {
			break
		}
	}
	l.log.Info("wan link reshaped", "direction", dir.String(), logShape, s.String())
	return nil
}

// SetDelay sets the one-way delay of both directions, keeping jitter and loss.
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

// Shape returns the shaping of one direction (Both reads Forward).
func (l *Link) Shape(dir Direction) Shape {
	s := l.shapes.Load()
	if dir == Reverse {
		return s[1]
	}
	return s[0]
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

// releaseAt returns when a unit read now in direction dir is delivered, and
// whether it is lost.
func (l *Link) releaseAt(dir Direction, udp bool) (time.Time, bool) {
	s := l.Shape(dir)
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

// gate is open unless the link is partitioned. wait returns a channel that is
// closed once the gate is open.
type gate struct {
	mu     sync.Mutex
	closed bool
	opened chan struct{}
}

func (g *gate) init() {
	g.opened = make(chan struct{})
	close(g.opened)
}

func (g *gate) close() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.closed = true
	g.opened = make(chan struct{})
	return true
}

func (g *gate) open() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		return false
	}
	g.closed = false
	close(g.opened)
	return true
}

func (g *gate) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

func (g *gate) wait() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.opened
}
