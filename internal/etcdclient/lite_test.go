//go:build straitetcdlite

package etcdclient_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/strait-mesh/strait/e2e/toolbin"
	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/internal/etcdlite"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// TestFederationOverEtcdLite runs what strait-proxy runs of federation, with
// the build tag that puts it over etcdlite, against the pinned etcd: a
// cache lists and watches, a registrar keeps a leased record, a store
// writes; after a SIGKILL and restart of the member the cache sees what was
// written after it, the registrar keeps its lease and record, and a
// registrar that stops withdraws its record. cmd/strait-proxy's
// TestFederationOverEtcdLite runs it with build.flags' tags.
func TestFederationOverEtcdLite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := startEtcd(ctx, t)
	cli, err := federation.Dial(federation.ClientConfig{Endpoints: []string{e.url}, ReconnectMax: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var _ *etcdlite.Client = cli // the tag is in effect
	log := slog.New(slog.DiscardHandler)
	ks := federation.Keyspace{}
	cache, err := federation.NewCache(federation.CacheConfig{
		Sources: []federation.Source{{Name: "etcd", Client: cli}}, Keyspace: ks,
		ProgressInterval: time.Second, RetryMax: time.Second, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := federation.NewRegistrar(federation.RegistrarConfig{Client: cli, Keyspace: ks, TTL: 20 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = cache.Run(runCtx) })
	regDone := make(chan struct{})
	go func() {
		defer close(regDone)
		_ = reg.Run(runCtx)
	}()
	defer func() {
		stop()
		wg.Wait()
		<-regDone
	}()
	reg.Put(ks.Gateway("west", "gw1"), &straitv1.Gateway{Cluster: "west", Id: "gw1", TrustDomain: "west.example",
		SpiffeId: "spiffe://west.example/strait/gateway/west", Address: "10.0.0.1:4443", EgressAddress: "10.0.0.1:15001",
		StartedAt: timestamppb.Now()})
	store := federation.NewStore(cli, ks)
	putExport(ctx, t, store, "before")
	waitSnapshot(ctx, t, cache, "the gateway and the first export", func(s *federation.Snapshot) bool {
		return len(s.Gateways("west")) == 1 && s.Export("west", federation.ServiceKey{Namespace: "default", Name: "before"}) != nil
	})
	lease := reg.LeaseID()

	e.kill()
	e.start(ctx)
	putExport(ctx, t, store, "after")
	waitSnapshot(ctx, t, cache, "the export written after the restart", func(s *federation.Snapshot) bool {
		return s.Export("west", federation.ServiceKey{Namespace: "default", Name: "after"}) != nil
	})
	if got := reg.LeaseID(); got != lease {
		t.Errorf("registrar lease %x after the restart, want %x kept", got, lease)
	}
	if len(cache.Snapshot().Gateways("west")) != 1 {
		t.Error("the gateway record is gone after the restart")
	}

	// Stopping revokes the lease: the record goes.
	stop()
	<-regDone
	snap, _, err := federation.ListSnapshot(ctx, cli, ks)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Gateways("west")) != 0 {
		t.Error("gateway record still in etcd after the registrar stopped")
	}
}

func putExport(ctx context.Context, t *testing.T, store *federation.Store, svc string) {
	t.Helper()
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err := store.PutExport(pctx, &straitv1.Export{Cluster: "west", Namespace: "default", Service: svc,
		Ports: []*straitv1.ServicePort{{Name: "tcp", Port: 9000, Protocol: straitv1.Protocol_PROTOCOL_TCP}}})
	if err != nil {
		t.Fatalf("put export %s: %v", svc, err)
	}
}

func waitSnapshot(ctx context.Context, t *testing.T, cache *federation.Cache, what string, ok func(*federation.Snapshot) bool) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		changed := cache.Changed()
		if ok(cache.Snapshot()) {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("the cache did not show %s within a minute", what)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
}

// etcdProc is the pinned etcd binary on loopback, which the test can
// SIGKILL and start again with its data.
type etcdProc struct {
	t         *testing.T
	bin, dir  string
	url, peer string
	cmd       *exec.Cmd
	exited    chan struct{}
	logs      bytes.Buffer
	logsMu    sync.Mutex
}

func startEtcd(ctx context.Context, t *testing.T) *etcdProc {
	t.Helper()
	bin, err := toolbin.Path(ctx, "etcd")
	if err != nil {
		t.Fatal(err)
	}
	e := &etcdProc{t: t, bin: bin, dir: t.TempDir(), url: "http://" + freeAddr(t), peer: "http://" + freeAddr(t)}
	e.start(ctx)
	t.Cleanup(e.kill)
	return e
}

func (e *etcdProc) Write(p []byte) (int, error) {
	e.logsMu.Lock()
	defer e.logsMu.Unlock()
	return e.logs.Write(p)
}

// start runs the member and waits until it answers a read.
func (e *etcdProc) start(ctx context.Context) {
	e.t.Helper()
	e.cmd = exec.Command(e.bin, "--name", "lite", "--data-dir", filepath.Join(e.dir, "data"),
		"--listen-client-urls", e.url, "--advertise-client-urls", e.url,
		"--listen-peer-urls", e.peer, "--initial-advertise-peer-urls", e.peer,
		"--initial-cluster", "lite="+e.peer, "--log-level", "warn")
	e.cmd.Stdout, e.cmd.Stderr = e, e
	if err := e.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(e.cmd, e.exited)
	cli, err := etcdlite.New(etcdlite.Config{Endpoints: []string{e.url}})
	if err != nil {
		e.t.Fatal(err)
	}
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := cli.Get(rctx, "health"); err != nil {
		e.logsMu.Lock()
		defer e.logsMu.Unlock()
		e.t.Fatalf("etcd does not serve: %v\n%s", err, e.logs.String())
	}
}

// kill kills the member with SIGKILL and waits for it to exit.
func (e *etcdProc) kill() {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Kill()
	<-e.exited
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
