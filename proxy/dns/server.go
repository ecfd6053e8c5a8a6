package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/strait-mesh/strait/proxy/capture"
)

// maxUDPMessage is the largest UDP message read or forwarded.
const maxUDPMessage = 4096

// tcpIdleTimeout closes an idle TCP client connection.
const tcpIdleTimeout = 10 * time.Second

// Server is the DNS responder. Create it with New and run it with Run.
type Server struct {
	cfg     Config
	log     *slog.Logger
	vips    *VIPTable
	queries *prometheus.CounterVec
	dialer  net.Dialer

	ready chan struct{}
	udp   net.PacketConn
	tcp   net.Listener
	conns sync.WaitGroup
}

// New validates cfg and returns a Server that is not running yet.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	vips, err := NewVIPTable(cfg.VIPRange)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:   cfg,
		log:   cfg.Logger,
		vips:  vips,
		ready: make(chan struct{}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "strait", Subsystem: "proxy", Name: "dns_queries_total",
			Help: "DNS queries, by result (vip, nxdomain, nodata, forwarded, error)."}, []string{"result"}),
		dialer: net.Dialer{Timeout: cfg.UpstreamTimeout, Control: capture.DialerControl(cfg.Mark)},
	}
	if err := cfg.Metrics.Register(s.queries); err != nil {
		return nil, fmt.Errorf("dns: register metrics: %w", err)
	}
	return s, nil
}

// VIPs is the table of virtual IPs the server hands out.
func (s *Server) VIPs() *VIPTable { return s.vips }

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the bound UDP address (TCP uses the same port), valid after
// Ready.
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// Run listens on UDP and TCP and answers until ctx ends; it returns
// ctx.Err() then.
func (s *Server) Run(ctx context.Context) error {
	if err := s.listen(ctx); err != nil {
		return err
	}
	close(s.ready)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.serveUDP(gctx) })
	g.Go(func() error { return s.serveTCP(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		_ = s.udp.Close()
		_ = s.tcp.Close()
		return nil
	})
	err := g.Wait()
	s.conns.Wait()
	if err != nil {
		return err
	}
	return ctx.Err()
}

// listen binds UDP, then TCP on the same port. With port 0 the port UDP
// got may be taken for TCP: it then tries again with another.
func (s *Server) listen(ctx context.Context) error {
	_, port, _ := net.SplitHostPort(s.cfg.Addr)
	tries := 1
	if port == "0" {
		tries = 20
	}
	var err error
	for range tries {
		if s.udp, s.tcp, err = listenPair(ctx, s.cfg.Addr); err == nil {
			return nil
		}
	}
	return fmt.Errorf("dns: %w", err)
}

// listenPair binds UDP on addr and TCP on the port UDP got.
func listenPair(ctx context.Context, addr string) (net.PacketConn, net.Listener, error) {
	var lc net.ListenConfig
	udp, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return nil, nil, err
	}
	tcp, err := lc.Listen(ctx, "tcp", udp.LocalAddr().String())
	if err != nil {
		_ = udp.Close()
		return nil, nil, err
	}
	return udp, tcp, nil
}

func (s *Server) serveUDP(ctx context.Context) error {
	buf := make([]byte, maxUDPMessage)
	for {
		n, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dns: read: %w", err)
		}
		query := append([]byte(nil), buf[:n]...)
		s.conns.Go(func() {
			if resp := s.handle(ctx, query, "udp"); resp != nil {
				_, _ = s.udp.WriteTo(resp, from)
			}
		})
	}
}

func (s *Server) serveTCP(ctx context.Context) error {
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dns: accept: %w", err)
		}
		s.conns.Go(func() { s.serveConn(ctx, c) })
	}
}

// serveConn answers length-prefixed queries on one TCP connection.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	for {
		_ = c.SetReadDeadline(time.Now().Add(tcpIdleTimeout))
		query, err := readTCPMessage(c)
		if err != nil {
			return
		}
		resp := s.handle(ctx, query, "tcp")
		if resp == nil {
			return
		}
		if err := writeTCPMessage(c, resp); err != nil {
			return
		}
	}
}

func readTCPMessage(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func writeTCPMessage(w io.Writer, msg []byte) error {
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(msg)), uint16(len(msg)))
	_, err := w.Write(append(b, msg...))
	return err
}
