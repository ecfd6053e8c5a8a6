package netns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-multierror"
	"golang.org/x/sys/unix"

	"github.com/strait-mesh/strait/e2e/wait"
	"github.com/strait-mesh/strait/e2e/wan"
)

// Topology is a built set of namespaces. Close removes it.
type Topology struct {
	spec   Spec
	plan   addressing
	log    *slog.Logger
	logDir string

	wan      *Host
	clusters []*Cluster
	rootFD   int // the process's own network namespace, where threads return

	mu        sync.Mutex
	closed    bool
	nsNames   []string // every namespace created, in creation order
	hosts     []*Host  // every namespace's Host, for closing their handles
	procs     map[*Proc]struct{}
	logSeq    int
	linkAddrs int
	links     []*runningLink
}

// Cluster is one cluster of a topology.
type Cluster struct {
	name   string
	subnet netip.Prefix
	routed bool
	router *Host
	hosts  []*Host
}

// Name returns the cluster's name.
func (c *Cluster) Name() string { return c.name }

// Subnet returns the cluster's /24.
func (c *Cluster) Subnet() netip.Prefix { return c.subnet }

// Router returns the cluster's router namespace.
func (c *Cluster) Router() *Host { return c.router }

// Hosts returns the cluster's hosts in spec order.
func (c *Cluster) Hosts() []*Host { return append([]*Host(nil), c.hosts...) }

// Host returns the named host, or nil.
func (c *Cluster) Host(name string) *Host {
	for _, h := range c.hosts {
		if h.name == name {
			return h
		}
	}
	return nil
}

// Kill sends SIGKILL to every running process the topology started on the
// cluster's hosts and router (a whole-cluster crash) and waits for them.
func (c *Cluster) Kill() error {
	t := c.router.topo
	t.mu.Lock()
	var procs []*Proc
	for p := range t.procs {
		if p.host.cluster == c.name {
			procs = append(procs, p)
		}
	}
	t.mu.Unlock()
	var errs *multierror.Error
	for _, p := range procs {
		if err := p.Kill(); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	return errs.ErrorOrNil()
}

// Isolate cuts the cluster off from everything outside it, in both
// directions, with nftables drop rules on its router: the WAN (so the WAN
// links in front of it, and its hosts' connections out through them) and
// every other cluster's subnet. Packets vanish, so connections hang, as
// when a region's network fails; traffic inside the cluster still flows.
// Rejoin undoes it.
func (c *Cluster) Isolate(ctx context.Context) error {
	t := c.router.topo
	peers := []netip.Prefix{t.plan.wanSubnet()}
	for _, o := range t.clusters {
		if o != c {
			peers = append(peers, o.subnet)
		}
	}
	for _, p := range peers {
		if err := c.router.Partition(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// Rejoin ends Isolate (and any other partition set on the router).
func (c *Cluster) Rejoin(ctx context.Context) error {
	return c.router.HealAll(ctx)
}

// Procs returns the processes the topology started on host, running or not.
func (t *Topology) Procs(host *Host) []*Proc {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*Proc
	for p := range t.procs {
		if p.host == host {
			out = append(out, p)
		}
	}
	return out
}

type runningLink struct {
	link   *wan.Link
	cancel context.CancelFunc
	done   chan struct{}
}

// Build creates the topology described by spec. On error, whatever was
// created is removed again.
func Build(ctx context.Context, spec Spec) (*Topology, error) {
	spec, err := spec.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := spec.validate(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	logDir := spec.LogDir
	if logDir == "" {
		if logDir, err = os.MkdirTemp("", "strait-e2e-"+spec.Prefix+"-"); err != nil {
			return nil, fmt.Errorf("netns: log dir: %w", err)
		}
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("netns: log dir: %w", err)
	}
	t := &Topology{
		spec:   spec,
		plan:   newAddressing(spec.Subnet),
		log:    spec.Logger.With("topology", spec.Prefix),
		logDir: logDir,
		procs:  make(map[*Proc]struct{}),
		rootFD: -1,
	}
	// Threads that enter a namespace come back to the one this thread is in
	// (the process's own: only locked threads ever leave it).
	if t.rootFD, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		return nil, fmt.Errorf("netns: open own namespace: %w", err)
	}
	if err := writeOwner(spec.Prefix); err != nil {
		unix.Close(t.rootFD)
		return nil, err
	}
	start := time.Now()
	if err := t.build(ctx); err != nil {
		return nil, errors.Join(err, t.Close())
	}
	if err := t.waitLinksUp(ctx); err != nil {
		return nil, errors.Join(err, t.Close())
	}
	t.log.Info("topology built", "namespaces", len(t.nsNames), "took", time.Since(start).Round(time.Millisecond), "logs", logDir)
	return t, nil
}

func (t *Topology) build(ctx context.Context) error {
	p := t.plan
	anyRouted := false
	for _, c := range t.spec.Clusters {
		anyRouted = anyRouted || c.Routed
	}
	fwd := 0
	if anyRouted {
		fwd = 1 // the WAN namespace routes to and from Routed clusters
	}
	var err error
	t.wan, err = t.newNS(ctx, "wan", "", "wan", p.wanAddr(), fwd)
	if err != nil {
		return err
	}
	if err := t.bridge(ctx, t.wan, netip.PrefixFrom(p.wanAddr(), 24)); err != nil {
		return err
	}
	for i, cs := range t.spec.Clusters {
		c, err := t.buildCluster(ctx, i, cs)
		if err != nil {
			return err
		}
		t.clusters = append(t.clusters, c)
	}
	// Routes: the WAN namespace reaches every cluster; routers reach Routed
	// clusters through it, and Routed clusters reach everything.
	for i, c := range t.clusters {
		if err := t.wan.ip(ctx, "route", "add", c.subnet.String(), "via", p.uplink(i).String()); err != nil {
			return err
		}
		if c.routed {
			if err := c.router.ip(ctx, "route", "add", "default", "via", p.wanAddr().String()); err != nil {
				return err
			}
			continue
		}
		for _, other := range t.clusters {
			if other.routed {
				if err := c.router.ip(ctx, "route", "add", other.subnet.String(), "via", p.wanAddr().String()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (t *Topology) buildCluster(ctx context.Context, i int, cs ClusterSpec) (*Cluster, error) {
	p := t.plan
	c := &Cluster{name: cs.Name, subnet: p.cluster(i), routed: cs.Routed}
	r, err := t.newNS(ctx, cs.Name, cs.Name, "router", p.router(i), 1)
	if err != nil {
		return nil, err
	}
	c.router = r
	if err := t.bridge(ctx, r, netip.PrefixFrom(p.router(i), 24)); err != nil {
		return nil, err
	}
	// Uplink: "wan" in the router, "c<i>" on the WAN bridge.
	peer := "c" + strconv.Itoa(i)
	steps := [][]string{
		{"-n", r.ns, "link", "add", "wan", "type", "veth", "peer", "name", peer, "netns", t.wan.ns},
		{"-n", r.ns, "addr", "add", netip.PrefixFrom(p.uplink(i), 24).String(), "dev", "wan"},
		{"-n", r.ns, "link", "set", "wan", "up"},
		{"-n", t.wan.ns, "link", "set", peer, "master", "br0", "up"},
	}
	for j, name := range cs.Hosts {
		h, err := t.newNS(ctx, cs.Name+"-"+name, cs.Name, name, p.host(i, j), 0)
		if err != nil {
			return nil, err
		}
		c.hosts = append(c.hosts, h)
		port := "h" + strconv.Itoa(j)
		steps = append(steps,
			[]string{"-n", h.ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", r.ns},
			[]string{"-n", r.ns, "link", "set", port, "master", "br0", "up"},
			[]string{"-n", h.ns, "addr", "add", netip.PrefixFrom(h.addr, 24).String(), "dev", "eth0"},
			[]string{"-n", h.ns, "link", "set", "eth0", "up"},
			[]string{"-n", h.ns, "route", "add", "default", "via", p.router(i).String()},
		)
	}
	for _, s := range steps {
		if err := runIP(ctx, s...); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// waitLinksUp waits until every interface of every namespace is
// operationally up. The kernel attaches a device's queueing discipline, and
// sets it up, from its link watch, which runs up to a second after the
// carrier comes on; until then the device drops what it is given, and the
// first connection through it would pay a 1 s SYN retransmission.
func (t *Topology) waitLinksUp(ctx context.Context) error {
	t.mu.Lock()
	names := append([]string(nil), t.nsNames...)
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, ns := range names {
		var down []string
		err := wait.Until(ctx, 20*time.Millisecond, func(ctx context.Context) (bool, error) {
			out, err := exec.CommandContext(ctx, "ip", "-n", ns, "-o", "link", "show").Output()
			if err != nil {
				return false, fmt.Errorf("netns: ip -n %s link show: %w", ns, err)
			}
			down = down[:0]
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				f := strings.Fields(line)
				if len(f) < 2 || strings.HasPrefix(f[1], "lo:") {
					continue
				}
				if !strings.Contains(line, " state UP ") {
					down = append(down, strings.TrimSuffix(f[1], ":"))
				}
			}
			return len(down) == 0, nil
		})
		if err != nil {
			return fmt.Errorf("netns: links of %s not up (%v): %w", ns, down, err)
		}
	}
	return nil
}

// newNS creates a namespace named <prefix>-<suffix> with loopback up and
// IPv4 forwarding set to forward (1 for a router, 0 for a host).
//
// A new namespace does not start from the kernel's defaults: with
// net.core.devconf_inherit_init_net=0 (the default) its IPv4 settings are
// copied from the host's (init_net), so on a host with forwarding on (any
// Docker or Kubernetes node) every namespace would forward. Every sysctl the
// topology depends on is therefore written here, in every namespace, before
// its links are added: forwarding is the only one (a host must not route, a
// router must).
func (t *Topology) newNS(ctx context.Context, suffix, cluster, name string, addr netip.Addr, forward int) (*Host, error) {
	ns := t.spec.Prefix + "-" + suffix
	if err := runIP(ctx, "netns", "add", ns); err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.nsNames = append(t.nsNames, ns)
	t.mu.Unlock()
	fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("netns: open %s: %w", ns, err)
	}
	h := &Host{topo: t, name: name, cluster: cluster, ns: ns, addr: addr, fd: fd}
	t.mu.Lock()
	t.hosts = append(t.hosts, h)
	t.mu.Unlock()
	if err := h.ip(ctx, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	if err := h.sysctl(ctx, "net.ipv4.ip_forward", forward); err != nil {
		return nil, err
	}
	return h, nil
}

// bridge creates br0 with addr in h.
func (t *Topology) bridge(ctx context.Context, h *Host, addr netip.Prefix) error {
	for _, s := range [][]string{
		{"link", "add", "br0", "type", "bridge"},
		{"addr", "add", addr.String(), "dev", "br0"},
		{"link", "set", "br0", "up"},
	} {
		if err := h.ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// Prefix returns the prefix of the topology's namespace names.
func (t *Topology) Prefix() string { return t.spec.Prefix }

// LogDir returns the directory holding the processes' logs.
func (t *Topology) LogDir() string { return t.logDir }

// WAN returns the WAN namespace, where WAN links listen.
func (t *Topology) WAN() *Host { return t.wan }

// Clusters returns the clusters in spec order.
func (t *Topology) Clusters() []*Cluster { return append([]*Cluster(nil), t.clusters...) }

// Cluster returns the named cluster; it panics when there is none, since that
// is a mistake in the test.
func (t *Topology) Cluster(name string) *Cluster {
	for _, c := range t.clusters {
		if c.name == name {
			return c
		}
	}
	panic(fmt.Sprintf("netns: no cluster %q in topology %s", name, t.spec.Prefix))
}

// Host returns a host of a cluster; it panics when there is none, since that
// is a mistake in the test.
func (t *Topology) Host(cluster, host string) *Host {
	if h := t.Cluster(cluster).Host(host); h != nil {
		return h
	}
	panic(fmt.Sprintf("netns: no host %q in cluster %q", host, cluster))
}

// NewWANAddr adds a new address to the WAN namespace's bridge and returns it,
// for a WAN link to listen on.
func (t *Topology) NewWANAddr(ctx context.Context) (netip.Addr, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return netip.Addr{}, ErrClosed
	}
	k := t.linkAddrs
	if k >= t.plan.maxLinkAddrs() {
		t.mu.Unlock()
		return netip.Addr{}, fmt.Errorf("netns: out of WAN addresses")
	}
	t.linkAddrs++
	t.mu.Unlock()
	a := t.plan.linkAddr(k)
	if err := t.wan.ip(ctx, "addr", "add", netip.PrefixFrom(a, 32).String(), "dev", "br0"); err != nil {
		return netip.Addr{}, err
	}
	return a, nil
}

// StartLink runs a WAN link inside the WAN namespace until Close. A Listen
// without a host (":8443") gets a new WAN address; cfg.Net is set to the WAN
// namespace. The link's Addr is what the cluster's gateways advertise.
func (t *Topology) StartLink(ctx context.Context, cfg wan.LinkConfig) (*wan.Link, error) {
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("netns: link listen %q: %w", cfg.Listen, err)
	}
	if host == "" {
		a, err := t.NewWANAddr(ctx)
		if err != nil {
			return nil, err
		}
		cfg.Listen = net.JoinHostPort(a.String(), port)
	}
	cfg.Net = t.wan
	if cfg.Logger == nil {
		cfg.Logger = t.log
	}
	link, err := wan.NewLink(cfg)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	rl := &runningLink{link: link, cancel: cancel, done: make(chan struct{})}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		cancel()
		link.Close()
		return nil, ErrClosed
	}
	t.links = append(t.links, rl)
	t.mu.Unlock()
	go func() {
		defer close(rl.done)
		_ = link.Run(runCtx)
	}()
	return link, nil
}

func (t *Topology) addProc(p *Proc) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	t.procs[p] = struct{}{}
	return nil
}

func (t *Topology) removeProc(p *Proc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.procs, p)
}

func (t *Topology) newLogPath(h *Host, label string) (string, error) {
	t.mu.Lock()
	t.logSeq++
	n := t.logSeq
	t.mu.Unlock()
	name := fmt.Sprintf("%03d-%s-%s-%s.log", n, h.cluster, h.name, label)
	if h.cluster == "" {
		name = fmt.Sprintf("%03d-%s-%s.log", n, h.name, label)
	}
	return filepath.Join(t.logDir, name), nil
}

// Close stops the topology's links, kills its processes (and any other
// process left in its namespaces) and deletes its namespaces, with their
// veths, bridges and nftables tables. The log directory is kept. Close is
// idempotent; it returns every problem it met.
func (t *Topology) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	links := t.links
	procs := make([]*Proc, 0, len(t.procs))
	for p := range t.procs {
		procs = append(procs, p)
	}
	names := t.nsNames
	hosts := t.hosts
	t.mu.Unlock()

	var errs *multierror.Error
	for _, l := range links {
		l.cancel()
		<-l.done
	}
	for _, p := range procs {
		if err := p.Kill(); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	// An open handle would keep a deleted namespace (and its veths) alive.
	for _, h := range hosts {
		unix.Close(h.fd)
	}
	unix.Close(t.rootFD)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := len(names) - 1; i >= 0; i-- {
		if err := deleteNS(ctx, names[i]); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	if err := removeOwner(t.spec.Prefix); err != nil {
		errs = multierror.Append(errs, err)
	}
	t.log.Info("topology removed", "namespaces", len(names))
	return errs.ErrorOrNil()
}

// deleteNS kills what runs in ns and deletes it.
func deleteNS(ctx context.Context, ns string) error {
	if err := killNSProcs(ctx, ns); err != nil {
		return err
	}
	return runIP(ctx, "netns", "del", ns)
}

// killNSProcs kills every process in ns and waits until none is left.
func killNSProcs(ctx context.Context, ns string) error {
	for attempt := 0; ; attempt++ {
		pids, err := nsPids(ctx, ns)
		if err != nil || len(pids) == 0 {
			return err
		}
		if attempt == 50 {
			return fmt.Errorf("netns: processes %v in %s survive SIGKILL", pids, ns)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond): // let the kernel reap them
		}
	}
}
