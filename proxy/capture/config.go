package capture

import (
	"errors"
	"fmt"
	"net/netip"
)

// Defaults of Config.
const (
	DefaultOutboundPort = 15001
	DefaultDNSPort      = 15053
	DefaultMark         = 0x5354 // "ST"
)

// Table and Chain are the nftables table (family ip) and its one base
// chain (type nat, hook output, priority dstnat) that nft.Install creates.
const (
	Table = "strait"
	Chain = "output"
)

// Config describes the capture rules. Every zero value means the default.
type Config struct {
	// OutboundPort is where redirected TCP goes: the proxy's transparent
	// listener on 127.0.0.1. Zero means DefaultOutboundPort.
	OutboundPort uint16
	// DNSPort is where redirected DNS queries (UDP and TCP port 53) go.
	// Zero means DefaultDNSPort.
	DNSPort uint16
	// NoDNS leaves DNS alone.
	NoDNS bool
	// Mark is the SO_MARK of the proxy's own connections, which are not
	// captured. Zero means DefaultMark.
	Mark uint32
	// ExcludeUIDs are users whose traffic is not captured (the proxy's, when
	// it runs as its own user).
	ExcludeUIDs []uint32
	// ExcludeGIDs are groups whose traffic is not captured: the proxy's
	// primary group when it cannot set SO_MARK (a non-root container has no
	// CAP_NET_ADMIN), as injected pods run it.
	ExcludeGIDs []uint32
	// ExcludeCIDRs are IPv4 destinations that are not captured, besides
	// loopback.
	ExcludeCIDRs []netip.Prefix
	// ExcludePorts are TCP destination ports that are not captured.
	ExcludePorts []uint16
}

// WithDefaults returns c with every zero value that has a default set to
// it.
func (c Config) WithDefaults() Config {
	if c.OutboundPort == 0 {
		c.OutboundPort = DefaultOutboundPort
	}
	if c.DNSPort == 0 {
		c.DNSPort = DefaultDNSPort
	}
	if c.Mark == 0 {
		c.Mark = DefaultMark
	}
	return c
}

// Validate reports every problem of c (defaults applied) at once, wrapping
// ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	for _, p := range c.ExcludeCIDRs {
		if !p.IsValid() || !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("exclude CIDR %s is not IPv4", p))
		}
	}
	if !c.NoDNS && c.DNSPort == c.OutboundPort {
		errs = append(errs, fmt.Errorf("DNS port and outbound port are both %d", c.DNSPort))
	}
	for _, p := range c.ExcludePorts {
		if p == 0 {
			errs = append(errs, errors.New("exclude port 0"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("capture: invalid config: %w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// ErrInvalidConfig is wrapped by Validate (and by nft.Install) for a
// Config that cannot be installed.
var ErrInvalidConfig = errors.New("invalid capture config")
