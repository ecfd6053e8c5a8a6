package dns

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-mesh/strait/federation"
)

// Defaults of Config.
const (
	DefaultAddr            = "127.0.0.1:15053"
	DefaultDomain          = "svc.clusterset.local"
	DefaultTTL             = 30 * time.Second
	DefaultUpstreamTimeout = 2 * time.Second
	DefaultResolvConf      = "/etc/resolv.conf"
)

// DefaultVIPRange is where virtual IPs come from: reserved (class E)
// space that is never routed.
const DefaultVIPRange = "240.240.0.0/16"

// Config configures a Server. Every zero value means the default.
type Config struct {
	// Addr is where the server listens, UDP and TCP. Zero means
	// DefaultAddr; port 0 picks a free port (the same for both).
	Addr string
	// Domain is the zone answered locally. Zero means DefaultDomain.
	Domain string
	// VIPRange is where virtual IPs come from. Zero means DefaultVIPRange.
	VIPRange netip.Prefix
	// TTL of answers. Zero means DefaultTTL.
	TTL time.Duration
	// Upstream is the host:port of the resolver other names go to. Zero
	// means the first nameserver of ResolvConf, port 53.
	Upstream string
	// ResolvConf is read for Upstream. Zero means DefaultResolvConf.
	ResolvConf string
	// UpstreamTimeout bounds a forwarded query. Zero means
	// DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration
	// Services, when set, limits answers to services the federation exports;
	// other names under Domain get NXDOMAIN. Nil answers every well-formed
	// name.
	Services federation.SnapshotSource
	// Mark is the SO_MARK of forwarded queries, so that capture rules let
	// them through. Zero means none.
	Mark uint32
	// Logger receives the server's logs. Nil discards them.
	Logger *slog.Logger
	// Metrics registers the server's metrics. Nil means a private registry.
	Metrics prometheus.Registerer
}

func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Domain == "" {
		c.Domain = DefaultDomain
	}
	c.Domain = strings.ToLower(strings.Trim(c.Domain, ".")) + "."
	if !c.VIPRange.IsValid() {
		c.VIPRange = netip.MustParsePrefix(DefaultVIPRange)
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if c.ResolvConf == "" {
		c.ResolvConf = DefaultResolvConf
	}
	if c.Upstream == "" {
		ns, err := firstNameserver(c.ResolvConf)
		if err != nil {
			return c, err
		}
		c.Upstream = net.JoinHostPort(ns, "53")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	return c, nil
}

func (c Config) validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("listen address %q: %w", c.Addr, err))
	}
	if _, _, err := net.SplitHostPort(c.Upstream); err != nil {
		errs = append(errs, fmt.Errorf("upstream %q: %w", c.Upstream, err))
	}
	if c.TTL < time.Second {
		errs = append(errs, fmt.Errorf("TTL %v is under a second", c.TTL))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dns: invalid config: %w", err)
	}
	return nil
}

// firstNameserver reads the first nameserver of a resolv.conf file.
func firstNameserver(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("dns: upstream resolver: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			return fields[1], nil
		}
	}
	return "", fmt.Errorf("dns: no nameserver in %s", path)
}
