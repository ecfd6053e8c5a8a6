package etcdlite

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/e2e/toolbin"
)

// etcdProc is the pinned etcd binary running on loopback for one test: a
// real member that a test can SIGKILL and start again with its data on the
// same ports.
type etcdProc struct {
	t          *testing.T
	bin, dir   string
	curl, purl string
	extra      []string    // more flags of etcd
	tls        *tls.Config // the clients' TLS, for an https curl
	mu         sync.Mutex
	cmd        *exec.Cmd
	exited     chan struct{}
	logs       *lockedBuffer
}

// startEtcd starts a one-member etcd with its data in a temporary
// directory; the test's end kills it.
func startEtcd(t *testing.T) *etcdProc {
	t.Helper()
	return startEtcdWith(t, "http", nil, nil)
}

// startEtcdWith starts it with a client URL of scheme, more flags, and the
// TLS of the test's clients.
func startEtcdWith(t *testing.T, scheme string, extra []string, tc *tls.Config) *etcdProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := toolbin.Path(ctx, "etcd")
	if err != nil {
		t.Fatal(err)
	}
	e := &etcdProc{t: t, bin: bin, dir: t.TempDir(), curl: scheme + "://" + freeAddr(t), purl: "http://" + freeAddr(t),
		extra: extra, tls: tc}
	e.start()
	t.Cleanup(e.kill)
	return e
}

// start runs the member and waits until it answers a read.
func (e *etcdProc) start() {
	e.t.Helper()
	cmd := exec.Command(e.bin, append([]string{"--name", "lite", "--data-dir", filepath.Join(e.dir, "data"),
		"--listen-client-urls", e.curl, "--advertise-client-urls", e.curl,
		"--listen-peer-urls", e.purl, "--initial-advertise-peer-urls", e.purl,
		"--initial-cluster", "lite=" + e.purl, "--log-level", "warn"}, e.extra...)...)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	e.mu.Lock()
	e.cmd, e.exited, e.logs = cmd, exited, logs
	e.mu.Unlock()
	cli := e.clientv3()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("etcd did not serve within a minute: %v\n%s", err, logs.String())
		}
		select {
		case <-exited:
			e.t.Fatalf("etcd exited: %s", logs.String())
		case <-time.After(50 * time.Millisecond): // the member is starting; nothing to wait on
		}
	}
}

// kill kills the member with SIGKILL and waits for it to exit.
func (e *etcdProc) kill() {
	e.mu.Lock()
	cmd, exited := e.cmd, e.exited
	e.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// clientv3 is etcd's own client of the member, closed at the test's end:
// the tests write and compact with it, and compare.
func (e *etcdProc) clientv3() *clientv3.Client {
	e.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.curl}, DialTimeout: 5 * time.Second, TLS: e.tls})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// lite is a Client of the member (and of extra endpoints first), closed at
// the test's end.
func (e *etcdProc) lite(extra ...string) *Client {
	e.t.Helper()
	cli, err := New(Config{Endpoints: append(extra, e.curl), DialTimeout: 2 * time.Second,
		DialKeepAliveTime: time.Second, DialKeepAliveTimeout: time.Second, TLS: e.tls})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = cli.Close() })
	return cli
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

// lockedBuffer is a bytes.Buffer that a process's output and the test may
// use at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testCtx is a context for one step of a test.
func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
