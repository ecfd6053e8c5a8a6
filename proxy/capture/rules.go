package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
)

// Defaults of Config.
const (
	DefaultOutboundPort = 15001
	DefaultDNSPort      = 15053
	DefaultMark         = 0x5354 // "ST"
	DefaultIPTables     = "iptables"
)

// Chain is the nat chain Install creates.
const Chain = "STRAIT_OUTPUT"

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
	// ExcludeCIDRs are destinations that are not captured, besides
	// loopback.
	ExcludeCIDRs []netip.Prefix
	// ExcludePorts are TCP destination ports that are not captured.
	ExcludePorts []uint16
	// IPTables is the iptables command. Zero means DefaultIPTables.
	IPTables string
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
	if c.IPTables == "" {
		c.IPTables = DefaultIPTables
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	for _, p := range c.ExcludeCIDRs {
		if !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("exclude CIDR %s is not IPv4", p))
		}
	}
	if !c.NoDNS && c.DNSPort == c.OutboundPort {
		errs = append(errs, fmt.Errorf("DNS port and outbound port are both %d", c.DNSPort))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("capture: invalid config: %w", err)
	}
	return nil
}

// jumps are the rules of OUTPUT that send traffic to Chain.
func jumps() [][]string {
	return [][]string{
		{"-p", "tcp", "-j", Chain},
		{"-p", "udp", "--dport", "53", "-j", Chain},
	}
}

// Rules are the rules of Chain, in order, as iptables arguments after
// "-A STRAIT_OUTPUT".
func Rules(cfg Config) [][]string {
	c := cfg.withDefaults()
	ret := []string{"-j", "RETURN"}
	rules := [][]string{
		append([]string{"-m", "mark", "--mark", "0x" + strconv.FormatUint(uint64(c.Mark), 16)}, ret...),
	}
	for _, uid := range c.ExcludeUIDs {
		rules = append(rules, append([]string{"-m", "owner", "--uid-owner", strconv.FormatUint(uint64(uid), 10)}, ret...))
	}
	rules = append(rules, append([]string{"-d", "127.0.0.0/8"}, ret...))
	for _, p := range c.ExcludeCIDRs {
		rules = append(rules, append([]string{"-d", p.Masked().String()}, ret...))
	}
	for _, port := range c.ExcludePorts {
		rules = append(rules, append([]string{"-p", "tcp", "--dport", strconv.Itoa(int(port))}, ret...))
	}
	if !c.NoDNS {
		dns := strconv.Itoa(int(c.DNSPort))
		rules = append(rules,
			[]string{"-p", "udp", "--dport", "53", "-j", "REDIRECT", "--to-ports", dns},
			[]string{"-p", "tcp", "--dport", "53", "-j", "REDIRECT", "--to-ports", dns})
	}
	rules = append(rules,
		[]string{"-p", "udp", "-j", "RETURN"},
		[]string{"-p", "tcp", "-j", "REDIRECT", "--to-ports", strconv.Itoa(int(c.OutboundPort))})
	return rules
}

// Install sets up the capture rules in the current network namespace. It
// replaces rules a previous Install left, so running it twice is harmless.
func Install(ctx context.Context, cfg Config) error {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return err
	}
	ipt := iptables{cmd: c.IPTables}
	if err := ipt.run(ctx, "-t", "nat", "-N", Chain); err != nil && !ipt.exists(ctx, "-t", "nat", "-S", Chain) {
		return err
	}
	if err := ipt.run(ctx, "-t", "nat", "-F", Chain); err != nil {
		return err
	}
	for _, r := range Rules(c) {
		if err := ipt.run(ctx, append([]string{"-t", "nat", "-A", Chain}, r...)...); err != nil {
			return err
		}
	}
	for _, j := range jumps() {
		if ipt.exists(ctx, append([]string{"-t", "nat", "-C", "OUTPUT"}, j...)...) {
			continue
		}
		if err := ipt.run(ctx, append([]string{"-t", "nat", "-A", "OUTPUT"}, j...)...); err != nil {
			return err
		}
	}
	return nil
}

// Cleanup removes every rule and chain Install adds. It succeeds when there
// is nothing to remove.
func Cleanup(ctx context.Context, cfg Config) error {
	c := cfg.withDefaults()
	ipt := iptables{cmd: c.IPTables}
	for _, j := range jumps() {
		args := append([]string{"-t", "nat", "-C", "OUTPUT"}, j...)
		for ipt.exists(ctx, args...) {
			if err := ipt.run(ctx, append([]string{"-t", "nat", "-D", "OUTPUT"}, j...)...); err != nil {
				return err
			}
		}
	}
	if !ipt.exists(ctx, "-t", "nat", "-S", Chain) {
		return nil
	}
	if err := ipt.run(ctx, "-t", "nat", "-F", Chain); err != nil {
		return err
	}
	return ipt.run(ctx, "-t", "nat", "-X", Chain)
}

// Installed reports whether any Strait rule is present in the nat table.
func Installed(ctx context.Context, cfg Config) (bool, error) {
	c := cfg.withDefaults()
	out, err := exec.CommandContext(ctx, c.IPTables, "-t", "nat", "-S").Output()
	if err != nil {
		return false, fmt.Errorf("capture: %s -t nat -S: %w", c.IPTables, err)
	}
	return bytes.Contains(out, []byte(Chain)), nil
}

// iptables runs one iptables command.
type iptables struct{ cmd string }

func (i iptables) run(ctx context.Context, args ...string) error {
	// -w waits for the xtables lock instead of failing.
	out, err := exec.CommandContext(ctx, i.cmd, append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("capture: %s %s: %w: %s", i.cmd, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// exists runs a check (-C, -S) and reports whether it succeeded.
func (i iptables) exists(ctx context.Context, args ...string) bool {
	return exec.CommandContext(ctx, i.cmd, append([]string{"-w"}, args...)...).Run() == nil
}
