package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	"go.etcd.io/etcd/server/v3/embed"
)

// DefaultClientURL is where `strait dev` serves etcd, and the endpoint the
// CLI uses when none is given.
const DefaultClientURL = "http://127.0.0.1:2379"

// Member configures one embedded etcd member.
type Member struct {
	// Name is the member name. Zero means "default".
	Name string
	// Dir is the data directory. Required.
	Dir string
	// ClientURL and PeerURL are where the member listens, e.g.
	// "http://127.0.0.1:2379". Zero means a free port on 127.0.0.1.
	ClientURL string
	PeerURL   string
}

// Config configures an embedded etcd cluster of one or more members.
type Config struct {
	// Members lists the members. One member is the usual case.
	Members []Member
	// StartTimeout bounds how long to wait for the cluster to be ready.
	// Zero means 30s.
	StartTimeout time.Duration
	// LogLevel is etcd's own log level. Zero means "error".
	LogLevel string
}

// Server is a running embedded etcd cluster.
type Server struct {
	etcds     []*embed.Etcd
	endpoints []string
	closeOnce sync.Once

	mu      sync.Mutex
	stopped map[int]bool // members stopped by StopMember
}

// Start starts every member of cfg and waits until the cluster serves.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if len(cfg.Members) == 0 {
		return nil, errors.New("embedded: no members configured")
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "error"
	}
	members := make([]Member, len(cfg.Members))
	copy(members, cfg.Members)
	var initial []string
	for i := range members {
		m := &members[i]
		if m.Name == "" {
			m.Name = fmt.Sprintf("member%d", i)
		}
		var err error
		if m.ClientURL, err = urlOrFree(m.ClientURL); err != nil {
			return nil, err
		}
		if m.PeerURL, err = urlOrFree(m.PeerURL); err != nil {
			return nil, err
		}
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	s := &Server{}
	// Members of a multi-member cluster wait for each other, so start them
	// all before waiting for any.
	for _, m := range members {
		ec, err := embedConfig(m, strings.Join(initial, ","), cfg.LogLevel)
		if err != nil {
			s.Close()
			return nil, err
		}
		e, err := embed.StartEtcd(ec)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("embedded: start member %s: %w", m.Name, err)
		}
		s.etcds = append(s.etcds, e)
		s.endpoints = append(s.endpoints, m.ClientURL)
	}
	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	for i, e := range s.etcds {
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			s.Close()
			return nil, fmt.Errorf("embedded: member %s: %w", members[i].Name, err)
		case <-timer.C:
			s.Close()
			return nil, fmt.Errorf("embedded: member %s not ready after %s", members[i].Name, cfg.StartTimeout)
		case <-ctx.Done():
			s.Close()
			return nil, ctx.Err()
		}
	}
	return s, nil
}

func embedConfig(m Member, initialCluster, logLevel string) (*embed.Config, error) {
	if m.Dir == "" {
		return nil, fmt.Errorf("embedded: member %s has no data directory", m.Name)
	}
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: member %s: %w", m.Name, err)
	}
	cu, err := url.Parse(m.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("embedded: member %s client URL: %w", m.Name, err)
	}
	pu, err := url.Parse(m.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("embedded: member %s peer URL: %w", m.Name, err)
	}
	ec := embed.NewConfig()
	ec.Name = m.Name
	ec.Dir = m.Dir
	ec.ListenClientUrls = []url.URL{*cu}
	ec.AdvertiseClientUrls = []url.URL{*cu}
	ec.ListenPeerUrls = []url.URL{*pu}
	ec.AdvertisePeerUrls = []url.URL{*pu}
	ec.InitialCluster = initialCluster
	ec.LogLevel = logLevel
	// A restarted member rejoins with its data dir; initial cluster state
	// only matters for a fresh one.
	ec.ClusterState = embed.ClusterStateFlagNew
	return ec, nil
}

// urlOrFree returns u, or an http URL on a free loopback port.
func urlOrFree(u string) (string, error) {
	if u != "" {
		return u, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("embedded: find a free port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("embedded: find a free port: %w", err)
	}
	return "http://" + addr, nil
}

// Endpoints returns the client URLs of the members.
func (s *Server) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// Member returns the i-th member, for tests that inspect one. Stop a member
// with StopMember, not with its own Close: embed.Etcd.Close must not be
// called twice, and Close closes every member StopMember did not.
func (s *Server) Member(i int) *embed.Etcd { return s.etcds[i] }

// StopMember stops the i-th member without coordination with the others,
// as a crash of that member would look to them: its raft node stops first
// (EtcdServer.HardStop), so a stopped leader hands nothing over and the
// survivors must notice its silence and elect a new leader after their
// election timeout. (embed.Etcd.Close alone stops gracefully: etcd moves
// leadership to a follower before stopping, and no election happens.) It is
// not a SIGKILL: the process lives on and the member's WAL is closed
// cleanly; e2e/etcdcluster kills real etcd processes. It is safe to call
// more than once.
func (s *Server) StopMember(i int) error {
	s.mu.Lock()
	if s.stopped == nil {
		s.stopped = map[int]bool{}
	}
	if s.stopped[i] {
		s.mu.Unlock()
		return nil
	}
	s.stopped[i] = true
	s.mu.Unlock()
	return closeMember(s.etcds[i])
}

// closeMember stops e's raft node without a leadership transfer, then closes
// the rest (Close's own graceful stop finds the node stopped: its transfer
// attempt fails at once and is only logged).
func closeMember(e *embed.Etcd) error {
	if e.Server != nil {
		e.Server.HardStop()
	}
	e.Close()
	select {
	case err, ok := <-e.Err():
		if ok && err != nil {
			return err
		}
	default:
	}
	return nil
}

// Close stops every member. It is safe to call more than once.
func (s *Server) Close() error {
	var errs *multierror.Error
	s.closeOnce.Do(func() {
		for i := range s.etcds {
			if err := s.StopMember(i); err != nil {
				errs = multierror.Append(errs, err)
			}
		}
	})
	return errs.ErrorOrNil()
}
