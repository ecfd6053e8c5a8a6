package netns

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"

	"github.com/hashicorp/go-multierror"
)

// Defaults of Spec.
const (
	// DefaultSubnet holds every address of a topology: the WAN is its first
	// /24, cluster i the (i+1)th.
	DefaultSubnet = "10.77.0.0/16"
	// DefaultPrefixBase starts generated prefixes: "st-" and 6 hex digits.
	DefaultPrefixBase = "st"
	// MaxHostsPerCluster keeps host addresses in .10 to .249.
	MaxHostsPerCluster = 240
	// MaxClusters keeps cluster subnets inside a /16 and router uplinks below
	// the WAN link addresses.
	MaxClusters = 90
)

// Spec describes a topology. Zero values mean the documented default.
type Spec struct {
	// Prefix starts every namespace name; it identifies the topology for
	// Sweep. Default: "st-" and 6 random hex digits. At most 20 characters of
	// [a-z0-9-].
	Prefix string
	// Subnet is an IPv4 /16 holding every address. Default: 10.77.0.0/16.
	Subnet netip.Prefix
	// Clusters are the clusters, in the order their subnets are assigned.
	Clusters []ClusterSpec
	// LogDir receives the output of every process started in the topology.
	// Default: a new directory under os.TempDir(), kept after Close so that
	// a failed test's logs can be read.
	LogDir string
	// Logger receives the topology's logs. Default: slog.Default().
	Logger *slog.Logger
}

// ClusterSpec describes one cluster.
type ClusterSpec struct {
	// Name is the cluster's name ([a-z0-9-], at most 20 characters).
	Name string
	// Hosts are the names of its hosts, one namespace each.
	Hosts []string
	// Routed makes the cluster reachable from every other cluster by plain
	// routing through the WAN namespace, without a WAN link (for shared
	// services such as an etcd region). Cut it with Host.Partition.
	Routed bool
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,19})$`)

func (s Spec) withDefaults() (Spec, error) {
	if s.Prefix == "" {
		b := make([]byte, 3)
		if _, err := rand.Read(b); err != nil {
			return s, fmt.Errorf("netns: random prefix: %w", err)
		}
		s.Prefix = DefaultPrefixBase + "-" + hex.EncodeToString(b)
	}
	if !s.Subnet.IsValid() {
		s.Subnet = netip.MustParsePrefix(DefaultSubnet)
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	return s, nil
}

func (s Spec) validate() error {
	var errs *multierror.Error
	add := func(format string, args ...any) {
		errs = multierror.Append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidSpec}, args...)...))
	}
	if !nameRE.MatchString(s.Prefix) {
		add("prefix %q: want 1-20 characters of [a-z0-9-]", s.Prefix)
	}
	if !s.Subnet.Addr().Is4() || s.Subnet.Bits() != 16 || s.Subnet.Masked() != s.Subnet {
		add("subnet %s: want an IPv4 /16", s.Subnet)
	}
	if len(s.Clusters) == 0 {
		add("no clusters")
	}
	if len(s.Clusters) > MaxClusters {
		add("%d clusters, at most %d", len(s.Clusters), MaxClusters)
	}
	seen := map[string]bool{"wan": true}
	for _, c := range s.Clusters {
		if !nameRE.MatchString(c.Name) {
			add("cluster name %q: want 1-20 characters of [a-z0-9-]", c.Name)
		}
		if seen[c.Name] {
			add("cluster name %q used twice or reserved", c.Name)
		}
		seen[c.Name] = true
		if len(c.Hosts) > MaxHostsPerCluster {
			add("cluster %s: %d hosts, at most %d", c.Name, len(c.Hosts), MaxHostsPerCluster)
		}
		hosts := map[string]bool{}
		for _, h := range c.Hosts {
			if !nameRE.MatchString(h) {
				add("cluster %s: host name %q: want 1-20 characters of [a-z0-9-]", c.Name, h)
			}
			if hosts[h] {
				add("cluster %s: host %q listed twice", c.Name, h)
			}
			hosts[h] = true
		}
	}
	return errs.ErrorOrNil()
}

// addressing computes the plan of a valid spec.
type addressing struct{ base [4]byte }

func newAddressing(subnet netip.Prefix) addressing {
	return addressing{base: subnet.Addr().As4()}
}

func (a addressing) addr(third, fourth int) netip.Addr {
	return netip.AddrFrom4([4]byte{a.base[0], a.base[1], byte(third), byte(fourth)})
}

func (a addressing) wanSubnet() netip.Prefix    { return netip.PrefixFrom(a.addr(0, 0), 24) }
func (a addressing) wanAddr() netip.Addr        { return a.addr(0, 1) }
func (a addressing) uplink(i int) netip.Addr    { return a.addr(0, 2+i) }
func (a addressing) linkAddr(k int) netip.Addr  { return a.addr(0, 100+k) }
func (a addressing) cluster(i int) netip.Prefix { return netip.PrefixFrom(a.addr(1+i, 0), 24) }
func (a addressing) router(i int) netip.Addr    { return a.addr(1+i, 1) }
func (a addressing) host(i, j int) netip.Addr   { return a.addr(1+i, 10+j) }
func (a addressing) maxLinkAddrs() int          { return 154 }
