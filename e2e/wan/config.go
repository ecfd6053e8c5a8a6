package wan

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/go-multierror"
)

// Direction names one direction of a link.
type Direction int

const (
	// Both directions.
	Both Direction = iota
	// Forward is client to backend.
	Forward
	// Reverse is backend to client.
	Reverse
)

// String returns "both", "forward" or "reverse".
func (d Direction) String() string {
	switch d {
	case Forward:
		return "forward"
	case Reverse:
		return "reverse"
	default:
		return "both"
	}
}

// ParseDirection parses the String form of a Direction ("" means Both).
func ParseDirection(s string) (Direction, error) {
	switch s {
	case "", "both":
		return Both, nil
	case "forward":
		return Forward, nil
	case "reverse":
		return Reverse, nil
	}
	return Both, fmt.Errorf("wan: unknown direction %q", s)
}

// Shape is what a link does to one direction of traffic.
type Shape struct {
	// Delay is the one-way delay added to every datagram and TCP chunk.
	Delay time.Duration `json:"delay"`
	// Jitter spreads the delay uniformly over [Delay-Jitter, Delay+Jitter]
	// (never below zero). TCP chunks keep their order whatever the jitter;
	// datagrams may be reordered when Jitter > 0.
	Jitter time.Duration `json:"jitter"`
	// Loss is the probability, in [0, 1], that a UDP datagram is dropped.
	Loss float64 `json:"loss"`
}

// String formats the shape for logs.
func (s Shape) String() string {
	return fmt.Sprintf("delay=%s jitter=%s loss=%g", s.Delay, s.Jitter, s.Loss)
}

func (s Shape) validate(name string) error {
	var errs *multierror.Error
	if s.Delay < 0 {
		errs = multierror.Append(errs, fmt.Errorf("%w: %s delay %s is negative", ErrInvalidConfig, name, s.Delay))
	}
	if s.Jitter < 0 {
		errs = multierror.Append(errs, fmt.Errorf("%w: %s jitter %s is negative", ErrInvalidConfig, name, s.Jitter))
	}
	if s.Loss < 0 || s.Loss > 1 {
		errs = multierror.Append(errs, fmt.Errorf("%w: %s loss %g is outside [0, 1]", ErrInvalidConfig, name, s.Loss))
	}
	return errs.ErrorOrNil()
}

func (ss SourceShape) validate() error {
	var errs *multierror.Error
	if !ss.From.IsValid() {
		errs = multierror.Append(errs, fmt.Errorf("%w: source shape without a prefix", ErrInvalidConfig))
	}
	errs = multierror.Append(errs, ss.Forward.validate(ss.From.String()+" forward"), ss.Reverse.validate(ss.From.String()+" reverse"))
	return errs.ErrorOrNil()
}

// PartitionMode says how a partitioned link treats TCP.
type PartitionMode int

const (
	// Blackhole (the default) stalls established TCP connections and accepts
	// new ones without forwarding a byte until the link heals, as a network
	// that loses every packet would. Clients see timeouts.
	Blackhole PartitionMode = iota
	// Refuse resets established TCP connections and resets new ones on
	// accept. Clients fail fast.
	Refuse
)

// Defaults of LinkConfig.
const (
	DefaultUDPIdleTimeout = 60 * time.Second
	DefaultDialTimeout    = 5 * time.Second
	DefaultMaxDatagram    = 64 * 1024
	DefaultTCPChunk       = 128 * 1024
	DefaultTCPQueue       = 128
)

// LinkConfig configures a Link. Zero values mean the documented default.
type LinkConfig struct {
	// Name labels the link in logs and stats. Default: Listen.
	Name string
	// Listen is the host:port the link accepts TCP and UDP on. Required; with
	// port 0, TCP picks a port and UDP binds the same one.
	Listen string
	// Backends are the host:port addresses traffic is forwarded to. New TCP
	// connections and UDP flows take them in turn. Required.
	Backends []string
	// Delay, Jitter and Loss shape both directions (see Shape); Reverse
	// overrides them for the backend-to-client direction.
	Delay  time.Duration
	Jitter time.Duration
	Loss   float64
	// Reverse, when set, shapes the backend-to-client direction instead of
	// Delay, Jitter and Loss.
	Reverse *Shape
	// Sources shape the traffic of clients in given prefixes instead (the
	// first match wins), so that each remote cluster sees its own latency.
	Sources []SourceShape
	// NoHandshakeDelay turns off the emulated TCP handshake. By default the
	// first forward bytes of a new TCP connection are held until one emulated
	// round trip (forward + reverse delay) after the accept, on top of their
	// own delay, because the relay's kernel completes the client's handshake
	// at once: so a client's time to first byte on a new connection includes
	// the handshake round trip it would pay across a real WAN.
	NoHandshakeDelay bool
	// PartitionMode says how a partition treats TCP. Default: Blackhole.
	PartitionMode PartitionMode
	// DisableTCP and DisableUDP turn one protocol off. Default: both on.
	DisableTCP bool
	DisableUDP bool
	// UDPIdleTimeout closes a UDP flow after this long without a datagram in
	// either direction. Default: DefaultUDPIdleTimeout (60 s).
	UDPIdleTimeout time.Duration
	// DialTimeout bounds each TCP dial to a backend. Default: 5 s.
	DialTimeout time.Duration
	// MaxDatagram is the largest datagram relayed. Default: 64 KiB.
	MaxDatagram int
	// TCPChunk is the largest TCP read delayed as one unit. Default: 128 KiB.
	TCPChunk int
	// TCPQueue is how many chunks per direction and connection may wait for
	// their delay before the reader blocks (so TCPQueue*TCPChunk bytes can
	// be in flight inside the link, 16 MiB by default: enough for 1 Gbit/s
	// at 60 ms RTT). Default: 128.
	TCPQueue int
	// Net opens the link's sockets. Default: HostNetwork{}.
	Net Network
	// Logger receives the link's logs. Default: slog.Default().
	Logger *slog.Logger
}

func (c LinkConfig) withDefaults() LinkConfig {
	if c.Name == "" {
		c.Name = c.Listen
	}
	if c.UDPIdleTimeout == 0 {
		c.UDPIdleTimeout = DefaultUDPIdleTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.MaxDatagram == 0 {
		c.MaxDatagram = DefaultMaxDatagram
	}
	if c.TCPChunk == 0 {
		c.TCPChunk = DefaultTCPChunk
	}
	if c.TCPQueue == 0 {
		c.TCPQueue = DefaultTCPQueue
	}
	if c.Net == nil {
		c.Net = HostNetwork{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c LinkConfig) validate() error {
	var errs *multierror.Error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = multierror.Append(errs, fmt.Errorf("%w: listen %q: %w", ErrInvalidConfig, c.Listen, err))
	}
	if len(c.Backends) == 0 {
		errs = multierror.Append(errs, fmt.Errorf("%w: no backends", ErrInvalidConfig))
	}
	for _, b := range c.Backends {
		if err := validHostPort(b); err != nil {
			errs = multierror.Append(errs, fmt.Errorf("%w: backend %q: %w", ErrInvalidConfig, b, err))
		}
	}
	errs = multierror.Append(errs, c.forward().validate("forward"))
	if c.Reverse != nil {
		errs = multierror.Append(errs, c.Reverse.validate("reverse"))
	}
	for _, ss := range c.Sources {
		errs = multierror.Append(errs, ss.validate())
	}
	if c.DisableTCP && c.DisableUDP {
		errs = multierror.Append(errs, fmt.Errorf("%w: both TCP and UDP disabled", ErrInvalidConfig))
	}
	if c.PartitionMode != Blackhole && c.PartitionMode != Refuse {
		errs = multierror.Append(errs, fmt.Errorf("%w: unknown partition mode %d", ErrInvalidConfig, c.PartitionMode))
	}
	for name, v := range map[string]int64{
		"udp idle timeout": int64(c.UDPIdleTimeout), "dial timeout": int64(c.DialTimeout),
		"max datagram": int64(c.MaxDatagram), "tcp chunk": int64(c.TCPChunk), "tcp queue": int64(c.TCPQueue),
	} {
		if v < 0 {
			errs = multierror.Append(errs, fmt.Errorf("%w: %s is negative", ErrInvalidConfig, name))
		}
	}
	return errs.ErrorOrNil()
}

func (c LinkConfig) forward() Shape {
	return Shape{Delay: c.Delay, Jitter: c.Jitter, Loss: c.Loss}
}

func (c LinkConfig) reverse() Shape {
	if c.Reverse != nil {
		return *c.Reverse
	}
	return c.forward()
}

func validHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}
