// Package etcdtest starts a real embedded etcd for tests, bound to a
// testing.TB: it is stopped when the test ends.
package etcdtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/federation/embedded"
)

// Start runs an etcd cluster of n members (n >= 1) in the test process and
// returns it with a client connected to every member. Both are closed when
// the test ends.
func Start(t testing.TB, n int) (*embedded.Server, *clientv3.Client) {
	t.Helper()
	cfg := embedded.Config{}
	for i := range n {
		cfg.Members = append(cfg.Members, embedded.Member{
			Name: fmt.Sprintf("m%d", i),
			Dir:  t.TempDir(),
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := embedded.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	cli := NewClient(t, srv.Endpoints()...)
	return srv, cli
}

// NewClient returns a client of endpoints, closed when the test ends.
func NewClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}
