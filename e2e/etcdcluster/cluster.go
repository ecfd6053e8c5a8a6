package etcdcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/strait-mesh/strait/e2e/netns"
	"github.com/strait-mesh/strait/e2e/wait"
)

// Defaults of Config.
const (
	DefaultClientPort        = 2379
	DefaultPeerPort          = 2380
	DefaultHeartbeatInterval = 100 * time.Millisecond // etcd's default
	DefaultElectionTimeout   = 1000 * time.Millisecond
	DefaultStopGrace         = 10 * time.Second
)

// ErrInvalidConfig is wrapped by every validation error of Start.
var ErrInvalidConfig = errors.New("etcdcluster: invalid config")

// Config describes a cluster. Zero values mean the documented default.
type Config struct {
	// Hosts run one member each (named after the host); 1, 3 or 5. Required.
	Hosts []*netns.Host
	// Binary is the etcd binary (toolbin.Path(ctx, "etcd")). Required.
	Binary string
	// DataDir holds one data directory per member. Required.
	DataDir string
	// ClientHost is the namespace that Client and the health checks dial
	// from. Default: the first host's cluster router (it stays up when
	// members die).
	ClientHost *netns.Host
	// ClientPort and PeerPort. Default: 2379 and 2380.
	ClientPort, PeerPort int
	// Token is the initial cluster token. Default: random.
	Token string
	// HeartbeatInterval and ElectionTimeout tune raft. Default: etcd's, 100 ms
	// and 1 s.
	HeartbeatInterval, ElectionTimeout time.Duration
	// ExtraArgs are appended to every member's command line.
	ExtraArgs []string
	// Logger receives the package's logs. Default: slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.ClientHost == nil && len(c.Hosts) > 0 && c.Hosts[0] != nil {
		c.ClientHost = c.Hosts[0].Router()
	}
	if c.ClientPort == 0 {
		c.ClientPort = DefaultClientPort
	}
	if c.PeerPort == 0 {
		c.PeerPort = DefaultPeerPort
	}
	if c.Token == "" {
		b := make([]byte, 6)
		if _, err := rand.Read(b); err != nil {
			return c, fmt.Errorf("etcdcluster: token: %w", err)
		}
		c.Token = "strait-e2e-" + hex.EncodeToString(b)
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

func (c Config) validate() error {
	var errs *multierror.Error
	if n := len(c.Hosts); n != 1 && n != 3 && n != 5 {
		errs = multierror.Append(errs, fmt.Errorf("%w: %d hosts, want 1, 3 or 5", ErrInvalidConfig, n))
	}
	for i, h := range c.Hosts {
		if h == nil {
			errs = multierror.Append(errs, fmt.Errorf("%w: host %d is nil", ErrInvalidConfig, i))
		}
	}
	if c.Binary == "" {
		errs = multierror.Append(errs, fmt.Errorf("%w: no etcd binary", ErrInvalidConfig))
	}
	if c.DataDir == "" {
		errs = multierror.Append(errs, fmt.Errorf("%w: no data dir", ErrInvalidConfig))
	}
	if c.ElectionTimeout < 5*c.HeartbeatInterval {
		errs = multierror.Append(errs, fmt.Errorf("%w: election timeout %s below 5 heartbeats of %s", ErrInvalidConfig, c.ElectionTimeout, c.HeartbeatInterval))
	}
	return errs.ErrorOrNil()
}

// Member is one etcd member.
type Member struct {
	Name      string
	Host      *netns.Host
	ClientURL string
	PeerURL   string
	dataDir   string

	mu   sync.Mutex
	proc *netns.Proc
}

// Proc returns the member's current process (nil before the first start).
func (m *Member) Proc() *netns.Proc {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc
}

// Running reports whether the member's process runs.
func (m *Member) Running() bool {
	p := m.Proc()
	if p == nil {
		return false
	}
	exited, _ := p.Exited()
	return !exited
}

// Cluster is a running etcd cluster.
type Cluster struct {
	cfg     Config
	log     *slog.Logger
	members []*Member
}

// Start starts every member and waits until the cluster has a leader and
// accepts a write, or ctx ends.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger.With("etcd_cluster", cfg.Token)}
	var initial []string
	for _, h := range cfg.Hosts {
		m := &Member{
			Name:      h.Name(),
			Host:      h,
			ClientURL: "http://" + h.AddrPort(cfg.ClientPort),
			PeerURL:   "http://" + h.AddrPort(cfg.PeerPort),
			dataDir:   filepath.Join(cfg.DataDir, h.Name()),
		}
		c.members = append(c.members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for _, m := range c.members {
		if err := c.start(m, strings.Join(initial, ",")); err != nil {
			return nil, errors.Join(err, c.Close())
		}
	}
	start := time.Now()
	if err := c.WaitHealthy(ctx); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	c.log.Info("etcd cluster healthy", "members", len(c.members), "took", time.Since(start).Round(time.Millisecond))
	return c, nil
}

func (c *Cluster) start(m *Member, initialCluster string) error {
	args := []string{
		"--name", m.Name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.ClientURL,
		"--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.PeerURL,
		"--initial-advertise-peer-urls", m.PeerURL,
		"--initial-cluster", initialCluster,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", c.cfg.Token,
		"--heartbeat-interval", strconv.FormatInt(c.cfg.HeartbeatInterval.Milliseconds(), 10),
		"--election-timeout", strconv.FormatInt(c.cfg.ElectionTimeout.Milliseconds(), 10),
	}
	args = append(args, c.cfg.ExtraArgs...)
	p, err := m.Host.StartProc(netns.ProcConfig{Path: c.cfg.Binary, Args: args, Label: "etcd"})
	if err != nil {
		return fmt.Errorf("etcdcluster: start %s: %w", m.Name, err)
	}
	m.mu.Lock()
	m.proc = p
	m.mu.Unlock()
	return nil
}

func (c *Cluster) initialCluster() string {
	var parts []string
	for _, m := range c.members {
		parts = append(parts, m.Name+"="+m.PeerURL)
	}
	return strings.Join(parts, ",")
}

// Members returns the members in host order.
func (c *Cluster) Members() []*Member { return append([]*Member(nil), c.members...) }

// Endpoints returns the client URLs of every member.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Client returns a client of the cluster that dials from ClientHost's
// namespace. The caller closes it.
func (c *Cluster) Client(endpoints ...string) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		endpoints = c.Endpoints()
	}
	host := c.cfg.ClientHost
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return host.DialContext(ctx, "tcp", strings.TrimPrefix(addr, "http://"))
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("etcdcluster: client: %w", err)
	}
	return cli, nil
}

// Status is what one running member reports.
type Status struct {
	Member   int // index in Members
	ID       uint64
	LeaderID uint64
	Revision int64
	RaftTerm uint64
}

// Statuses asks every running member for its status; members that do not
// answer within a second are left out.
func (c *Cluster) Statuses(ctx context.Context) ([]Status, error) {
	cli, err := c.Client()
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	var out []Status
	for i, m := range c.members {
		if !m.Running() {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := cli.Status(sctx, m.ClientURL)
		cancel()
		if err != nil {
			continue
		}
		out = append(out, Status{Member: i, ID: st.Header.MemberId, LeaderID: st.Leader, Revision: st.Header.Revision, RaftTerm: st.RaftTerm})
	}
	return out, nil
}

// Leader returns the index of the leader that a majority of the running
// members agree on; it fails when there is none right now.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	sts, err := c.Statuses(ctx)
	if err != nil {
		return -1, err
	}
	votes := map[uint64]int{}
	byID := map[uint64]int{}
	for _, st := range sts {
		byID[st.ID] = st.Member
		if st.LeaderID != 0 {
			votes[st.LeaderID]++
		}
	}
	for id, n := range votes {
		if idx, ok := byID[id]; ok && n > len(c.members)/2 {
			return idx, nil
		}
	}
	return -1, fmt.Errorf("etcdcluster: no leader agreed on by a majority (statuses %+v)", sts)
}

// WaitHealthy waits until a majority agrees on a running leader and a write
// through the cluster succeeds.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	err := wait.Until(ctx, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		if _, err := c.Leader(ctx); err != nil {
			return false, wait.Retry(err)
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("etcdcluster: not healthy: %w%s", err, c.exitedMembers())
	}
	cli, err := c.Client()
	if err != nil {
		return err
	}
	defer cli.Close()
	return wait.Until(ctx, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := cli.Put(wctx, "/strait-e2e/health", time.Now().Format(time.RFC3339Nano))
		return err == nil, wait.Retry(err)
	})
}

func (c *Cluster) exitedMembers() string {
	var b strings.Builder
	for _, m := range c.members {
		if p := m.Proc(); p != nil {
			if exited, err := p.Exited(); exited {
				fmt.Fprintf(&b, "\nmember %s exited (%v); log %s", m.Name, err, p.LogPath())
			}
		}
	}
	return b.String()
}

// Kill kills member i with SIGKILL.
func (c *Cluster) Kill(i int) error {
	c.log.Info("killing etcd member", "member", c.members[i].Name)
	return c.members[i].Proc().Kill()
}

// Stop stops member i with SIGTERM (SIGKILL after DefaultStopGrace).
func (c *Cluster) Stop(i int) error {
	c.log.Info("stopping etcd member", "member", c.members[i].Name)
	return c.members[i].Proc().Stop(DefaultStopGrace)
}

// StopAll stops every running member.
func (c *Cluster) StopAll() error {
	var errs *multierror.Error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, m := range c.members {
		if !m.Running() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Stop(i); err != nil {
				mu.Lock()
				errs = multierror.Append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs.ErrorOrNil()
}

// Restart starts member i again with its data (it must have exited) and waits
// until the cluster is healthy.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	m := c.members[i]
	if m.Running() {
		return fmt.Errorf("etcdcluster: member %s still runs", m.Name)
	}
	if err := c.start(m, c.initialCluster()); err != nil {
		return err
	}
	return c.WaitHealthy(ctx)
}

// StartAll starts every stopped member with its data and waits until the
// cluster is healthy.
func (c *Cluster) StartAll(ctx context.Context) error {
	for _, m := range c.members {
		if m.Running() {
			continue
		}
		if err := c.start(m, c.initialCluster()); err != nil {
			return err
		}
	}
	return c.WaitHealthy(ctx)
}

// Close kills every member. The topology would too; Close lets a test stop
// etcd before the topology goes.
func (c *Cluster) Close() error {
	var errs *multierror.Error
	for _, m := range c.members {
		if p := m.Proc(); p != nil {
			if err := p.Kill(); err != nil {
				errs = multierror.Append(errs, err)
			}
		}
	}
	return errs.ErrorOrNil()
}
