package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/internal/ratelog"
	"github.com/strait-mesh/strait/proxy/capture"
	"github.com/strait-mesh/strait/proxy/session"
	"github.com/strait-mesh/strait/trust"
)

// Proxy is the per-workload proxy. Create it with New and run it with Run.
type Proxy struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	dialer  net.Dialer
	bufs    sync.Pool // *[]byte of relayBufSize

	started atomic.Bool
	ready   chan struct{}
	inbound net.Listener   // nil for a client-only proxy
	ups     []net.Listener // by index of cfg.Upstreams
	transp  net.Listener   // nil without Config.Transparent

	conns    connSet
	load     loadTracker
	registry *registration
	// refusalLog bounds the rate of WARN lines about refused
	// destinations, which a bad record can cause on every connection.
	refusalLog *ratelog.Limiter
	// shedLog bounds the rate of WARN lines about shed connections, which
	// a stalled proxy drops by the hundred.
	shedLog *ratelog.Limiter

	// sessions pools client sessions and sessionSrv serves inbound ones;
	// both nil with sessions off (sessionSrv also without a service).
	sessions       *session.Pool
	sessionSrv     *session.Server
	sessionMetrics *session.Metrics
	// draining is set once Run's context is cancelled: inbound streams
	// are refused with DRAINING.
	draining atomic.Bool
	// lastSweep is when sweepSessions last ran (UnixNano);
	// drainingSince is since when each trust domain has had a draining
	// gateway in the snapshot, as sweepSessions last saw.
	lastSweep     atomic.Int64
	sweepMu       sync.Mutex
	drainingSince map[spiffeid.TrustDomain]time.Time
}

// New validates cfg and returns a Proxy that is not running yet.
func New(cfg Config) (*Proxy, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:        cfg,
		log:        cfg.Logger,
		metrics:    m,
		dialer:     net.Dialer{Timeout: cfg.DialTimeout, Control: capture.DialerControl(cfg.Mark)},
		ready:      make(chan struct{}),
		refusalLog: ratelog.New(ratelog.Config{}),
		shedLog:    ratelog.New(ratelog.Config{}),
	}
	if cfg.Sessions == SessionsOn {
		if p.sessionMetrics, err = session.NewMetrics(cfg.Metrics); err != nil {
			return nil, wrapf("%w", err)
		}
		p.sessions = session.NewPool(cfg.Session, p.sessionMetrics)
		if cfg.Service != "" {
			if p.sessionSrv, err = session.NewServer(cfg.Session, p.sessionMetrics); err != nil {
				return nil, wrapf("%w", err)
			}
		}
	}
	p.bufs.New = func() any { b := make([]byte, relayBufSize); return &b }
	p.conns.init()
	p.load.init()
	return p, nil
}

// Ready is closed once Run has bound every listener; the Addr methods are
// valid from then on.
func (p *Proxy) Ready() <-chan struct{} { return p.ready }

// InboundAddr is the bound address of the inbound mTLS listener, or nil for
// a client-only proxy or before Ready.
func (p *Proxy) InboundAddr() net.Addr {
	if !p.isReady() || p.inbound == nil {
		return nil
	}
	return p.inbound.Addr()
}

// UpstreamAddr is the bound address of the i-th upstream of Config.Upstreams,
// or nil before Ready or when i is out of range.
func (p *Proxy) UpstreamAddr(i int) net.Addr {
	if !p.isReady() || i < 0 || i >= len(p.ups) {
		return nil
	}
	return p.ups[i].Addr()
}

// UpstreamAddrByName is UpstreamAddr for the upstream whose Name is name
// (for example "payments.default:9000").
func (p *Proxy) UpstreamAddrByName(name string) net.Addr {
	for i, u := range p.cfg.Upstreams {
		if u.Name() == name {
			return p.UpstreamAddr(i)
		}
	}
	return nil
}

// TransparentAddr is the bound address of the transparent listener, or nil
// without Config.Transparent or before Ready.
func (p *Proxy) TransparentAddr() net.Addr {
	if !p.isReady() || p.transp == nil {
		return nil
	}
	return p.transp.Addr()
}

func (p *Proxy) isReady() bool {
	select {
	case <-p.ready:
		return true
	default:
		return false
	}
}

// Run binds the listeners, registers the endpoint, serves until ctx is
// cancelled, then drains: it stops accepting, withdraws the endpoint, and
// lets open connections finish for up to Config.DrainTimeout before closing
// them. It returns ctx.Err() after a clean stop, or the error that stopped
// it. Run may be called once; later calls return ErrAlreadyStarted.
func (p *Proxy) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return ErrAlreadyStarted
	}
	if err := p.listen(); err != nil {
		return err
	}
	if p.inbound != nil {
		if err := p.prepareRegistration(); err != nil {
			p.closeListeners()
			return err
		}
	}
	close(p.ready)
	p.log.Info("proxy started", "inbound", p.InboundAddr(), "upstreams", len(p.ups))

	// Connections outlive ctx while draining; connCtx ends them at the
	// drain deadline.
	connCtx, stopConns := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConns()
	g, gctx := errgroup.WithContext(ctx)
	if p.inbound != nil {
		inTLS, err := p.inboundTLS()
		if err != nil {
			return err
		}
		g.Go(func() error {
			return p.acceptLoop(gctx, p.inbound, func(c net.Conn) { p.serveInbound(connCtx, inTLS, c) })
		})
		g.Go(func() error { return p.healthLoop(gctx) })
	}
	for i, ln := range p.ups {
		up := p.cfg.Upstreams[i]
		g.Go(func() error { return p.acceptLoop(gctx, ln, func(c net.Conn) { p.serveOutbound(connCtx, up, c) }) })
	}
	if p.transp != nil {
		g.Go(func() error { return p.acceptLoop(gctx, p.transp, func(c net.Conn) { p.serveTransparent(connCtx, c) }) })
	}
	if p.sessions != nil {
		g.Go(func() error { return p.sweepLoop(gctx) })
	}
	g.Go(func() error {
		<-gctx.Done()
		// Withdraw first, so that callers stop choosing this endpoint;
		// those that still connect are refused and retry elsewhere.
		if p.registry != nil {
			p.registry.withdraw()
		}
		p.closeListeners()
		p.draining.Store(true)
		if p.sessionSrv != nil {
			// GOAWAY: callers open no new stream on this proxy's
			// sessions, which close once their streams have ended.
			_ = p.sessionSrv.Shutdown(connCtx)
		}
		return nil
	})
	err := g.Wait()
	p.drain(stopConns)
	if p.sessions != nil {
		p.sessions.Close()
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return ctx.Err()
}

// prepareRegistration builds the Endpoint record from the bound address
// and the SVID.
func (p *Proxy) prepareRegistration() error {
	svid, err := p.cfg.SVIDs.GetX509SVID()
	if err != nil {
		return wrapf("own SVID: %w", err)
	}
	// The Endpoint record names the SVID's ID as the endpoint's server;
	// callers accept only workloads of the service's namespace.
	if err := (federation.ServerPolicy{Namespace: p.cfg.Namespace}).Check(svid.ID); err != nil {
		return wrapf("own SVID cannot serve %s.%s: %w", p.cfg.Service, p.cfg.Namespace, err)
	}
	if want, err := trust.WorkloadID(svid.ID.TrustDomain(), p.cfg.Namespace, p.cfg.ServiceAccount); err == nil && want != svid.ID {
		p.log.Warn("SVID does not match namespace and service account", logPeerID, svid.ID.String(), logWant, want.String())
	}
	p.registry = p.newRegistration(svid.ID.String())
	return nil
}

// listen binds the inbound listener and every upstream listener, or none.
func (p *Proxy) listen() error {
	var lc net.ListenConfig
	if p.cfg.Service != "" {
		ln, err := lc.Listen(context.Background(), "tcp", p.cfg.InboundListenAddr)
		if err != nil {
			return wrapf("inbound listener: %w", err)
		}
		p.inbound = ln
	}
	for _, u := range p.cfg.Upstreams {
		ln, err := lc.Listen(context.Background(), "tcp", u.ListenAddr)
		if err != nil {
			p.closeListeners()
			return wrapf("upstream %s: %w", u.Name(), err)
		}
		p.ups = append(p.ups, ln)
	}
	if t := p.cfg.Transparent; t != nil {
		ln, err := lc.Listen(context.Background(), "tcp", t.ListenAddr)
		if err != nil {
			p.closeListeners()
			return wrapf("transparent listener: %w", err)
		}
		p.transp = ln
	}
	return nil
}

func (p *Proxy) closeListeners() {
	if p.inbound != nil {
		_ = p.inbound.Close()
	}
	for _, ln := range p.ups {
		_ = ln.Close()
	}
	if p.transp != nil {
		_ = p.transp.Close()
	}
}

// acceptLoop serves ln until it is closed. Each connection's handler runs in
// a goroutine the connection set owns.
func (p *Proxy) acceptLoop(ctx context.Context, ln net.Listener, serve func(net.Conn)) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return wrapf("accept on %s: %w", ln.Addr(), err)
		}
		if !p.conns.goServe(c, serve) {
			_ = c.Close()
		}
	}
}

// drain withdraws the endpoint, then waits for open connections up to the
// drain timeout, then closes what is left.
func (p *Proxy) drain(stopConns context.CancelFunc) {
	if p.registry != nil {
		p.registry.withdraw() // already done unless Run failed
	}
	open := p.conns.count()
	if open > 0 {
		p.log.Info("draining", "connections", open, "timeout", p.cfg.DrainTimeout)
	}
	timer := time.NewTimer(p.cfg.DrainTimeout)
	defer timer.Stop()
	select {
	case <-p.conns.idle():
	case <-timer.C:
		p.log.Warn("drain timeout, closing connections", "connections", p.conns.count())
		stopConns()
		p.conns.closeAll()
	}
	p.conns.wait()
	p.log.Info("proxy stopped")
}
