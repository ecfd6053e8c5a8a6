package capture

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
)

// Defaults of Config.
const (
	DefaultOutboundPort = 15001
	DefaultDNSPort      = 15053
	DefaultMark         = 0x5354 // "ST"
)

// Table and Chain are the nftables table (family ip) and its one base
// chain (type nat, hook output, priority dstnat) that Install creates.
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

func (c Config) withDefaults() Config {
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

func (c Config) validate() error {
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

// ErrInvalidConfig is wrapped by Install for a Config it cannot install.
var ErrInvalidConfig = errors.New("invalid capture config")

// Rules are the rules of the chain that Install installs for cfg, in
// order, in the syntax of `nft list table ip strait` (and of List).
func Rules(cfg Config) []string {
	rs := build(cfg.withDefaults())
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.text
	}
	return out
}

// Install sets up the capture rules in the current network namespace, over
// netlink (no external command; needs CAP_NET_ADMIN only). In one
// transaction it replaces whatever table a previous Install left, so
// running it twice is harmless and no packet ever sees half the rules.
func Install(ctx context.Context, cfg Config) error {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("capture: netlink: %w", err)
	}
	t := table()
	// Adding an existing table is no error: add, delete and add again
	// replaces it whole.
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)
	ch := conn.AddChain(chain(t))
	for _, r := range build(c) {
		conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.exprs})
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("capture: install table ip %s: %w", Table, err)
	}
	return nil
}

// Cleanup removes the table Install adds, with every rule in it. It
// succeeds when there is nothing to remove. cfg is not needed (the table
// holds everything) and is accepted for symmetry with Install.
func Cleanup(ctx context.Context, _ Config) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("capture: netlink: %w", err)
	}
	// Adding first makes the delete succeed whether or not the table was
	// there, in one transaction.
	t := table()
	conn.AddTable(t)
	conn.DelTable(t)
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("capture: delete table ip %s: %w", Table, err)
	}
	return nil
}

// Installed reports whether the capture table is present in the current
// network namespace.
func Installed(ctx context.Context, _ Config) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("capture: %w", err)
	}
	conn, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("capture: netlink: %w", err)
	}
	return present(conn)
}

func present(conn *nftables.Conn) (bool, error) {
	ts, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("capture: list tables: %w", err)
	}
	return slices.ContainsFunc(ts, func(t *nftables.Table) bool { return t.Name == Table }), nil
}

func table() *nftables.Table {
	return &nftables.Table{Name: Table, Family: nftables.TableFamilyIPv4}
}

func chain(t *nftables.Table) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Name: Chain, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest, Policy: &accept,
	}
}
