package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/internal/demo"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// Two clusters, each its own trust domain.
const (
	east   = "east"
	west   = "west"
	eastTD = "east.strait.local"
	westTD = "west.strait.local"
)

var echoKey = federation.ServiceKey{Namespace: "default", Name: "echo"}

// world is a federation in one process: two CAs, their bundles, a snapshot
// source and a registry that publishes into it.
type world struct {
	t       testing.TB
	cas     map[string]*trust.CA // by cluster
	bundles *x509bundle.Set
	reg     *testRegistry
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{t: t, cas: map[string]*trust.CA{}, bundles: x509bundle.NewSet()}
	for cluster, td := range map[string]string{east: eastTD, west: westTD} {
		ca, err := trust.NewCA(trust.CAConfig{TrustDomain: spiffeid.RequireTrustDomainFromString(td)})
		if err != nil {
			t.Fatal(err)
		}
		w.cas[cluster] = ca
		w.bundles.Add(ca.Bundle())
	}
	w.reg = newTestRegistry()
	return w
}

// svid issues the SVID of a workload of a cluster.
func (w *world) svid(cluster, sa string) *x509svid.SVID {
	w.t.Helper()
	ca := w.cas[cluster]
	id, err := trust.WorkloadID(ca.TrustDomain(), "default", sa)
	if err != nil {
		w.t.Fatal(err)
	}
	s, err := ca.IssueX509SVID(id, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

// gateway is a Gateway record of a cluster; egress may be "".
func gateway(cluster, id, egress string) *straitv1.Gateway {
	td := map[string]string{east: eastTD, west: westTD}[cluster]
	return &straitv1.Gateway{Cluster: cluster, Id: id, TrustDomain: td, EgressAddress: egress,
		SpiffeId: "spiffe://" + td + "/strait/gateway/" + cluster}
}

// export is an Export record of echo.default port 9000.
func export(cluster string, consumers ...string) *straitv1.Export {
	return &straitv1.Export{Cluster: cluster, Namespace: "default", Service: "echo", Consumers: consumers,
		Ports:     []*straitv1.ServicePort{{Name: "tcp", Port: 9000, Protocol: straitv1.Protocol_PROTOCOL_TCP}},
		CreatedAt: timestamppb.New(time.Unix(1000, 0))}
}

// serverProxy runs a proxy for echo.default in cluster, in front of a new
// echo app, and waits until its endpoint is ready.
func (w *world) serverProxy(cluster, id string, mutate ...func(*Config)) (*Proxy, *demo.EchoServer) {
	w.t.Helper()
	app, ln := startEcho(w.t)
	cfg := Config{
		Cluster: cluster, Service: "echo", ID: id,
		InboundListenAddr: "127.0.0.1:0", AppAddr: ln.Addr().String(),
		HealthCheck: HealthCheck{Interval: 50 * time.Millisecond},
		SVIDs:       w.svid(cluster, "echo"),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	p := w.run(cfg)
	key := federation.Keyspace{}.Endpoint(cluster, "default", "echo", id)
	eventually(w.t, 5*time.Second, "endpoint "+id+" ready", func() bool { return w.reg.ready(key) })
	return p, app
}

// clientProxy runs a client-only proxy in cluster with one upstream to
// echo.default:9000 (pinned to pin, if set).
func (w *world) clientProxy(cluster, sa, pin string) *Proxy {
	w.t.Helper()
	return w.run(Config{
		Cluster: cluster, ServiceAccount: sa,
		Upstreams: []Upstream{{Service: echoKey, Port: 9000, Cluster: pin, ListenAddr: "127.0.0.1:0"}},
		SVIDs:     w.svid(cluster, sa),
	})
}

// run starts a proxy with the world's bundles, snapshots and registry; it
// stops when the test ends.
func (w *world) run(cfg Config) *Proxy {
	w.t.Helper()
	p, stop := w.start(cfg)
	w.t.Cleanup(func() {
		if err := stop(); !errors.Is(err, context.Canceled) {
			w.t.Errorf("Run() = %v, want context.Canceled", err)
		}
	})
	return p
}

// start starts a proxy and waits until it is ready; stop cancels it and
// returns what Run returned. stop may be called more than once.
func (w *world) start(cfg Config) (p *Proxy, stop func() error) {
	w.t.Helper()
	cfg.Bundles = w.bundles
	cfg.Snapshots = w.reg.src
	if cfg.Registry == nil {
		cfg.Registry = w.reg
	}
	cfg.Metrics = prometheus.NewRegistry()
	level := slog.LevelInfo
	if _, bench := w.t.(*testing.B); bench {
		level = slog.LevelWarn
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(w.t.Output(), &slog.HandlerOptions{Level: level}))
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 2 * time.Second
	}
	p, err := New(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	select {
	case <-p.Ready():
	case err := <-done:
		cancel()
		w.t.Fatalf("Run() = %v before ready", err)
	}
	return p, stop
}

func startEcho(t testing.TB) (*demo.EchoServer, net.Listener) {
	t.Helper()
	ln := listen(t)
	app := &demo.EchoServer{}
	go func() { _ = app.Serve(ln) }()
	t.Cleanup(func() { _ = app.Close() })
	return app, ln
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// roundTrip sends msg through the upstream of client, half-closes, and
// returns what came back.
func roundTrip(t testing.TB, client *Proxy, msg []byte) ([]byte, error) {
	t.Helper()
	c, err := net.Dial("tcp", client.UpstreamAddr(0).String())
	if err != nil {
		// A refusal resets the connection, which may happen before Dial
		// returns.
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if werr := <-errc; err == nil && werr != nil {
		err = werr
	}
	return got, err
}

// testRegistry is a federation.Registry that publishes what is put into a
// StaticSource, over a base set of records.
type testRegistry struct {
	src *federation.StaticSource

	mu      sync.Mutex
	base    []proto.Message
	records map[string]proto.Message
	rev     int64
	deletes []string
}

func newTestRegistry() *testRegistry {
	return &testRegistry{src: federation.NewStaticSource(nil), records: map[string]proto.Message{}}
}

// setBase replaces the records that are not registered (gateways, exports).
func (r *testRegistry) setBase(msgs ...proto.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.base = msgs
	r.publish()
}

func (r *testRegistry) Put(key string, msg proto.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records[key] = proto.Clone(msg)
	r.publish()
}

func (r *testRegistry) Delete(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.records, key)
	r.deletes = append(r.deletes, key)
	r.publish()
}

// publish must be called with mu held.
func (r *testRegistry) publish() {
	r.rev++
	var recs []federation.Record
	for _, m := range r.base {
		recs = append(recs, federation.Record{Message: m})
	}
	for k, m := range r.records {
		recs = append(recs, federation.Record{Key: k, Message: m})
	}
	r.src.Set(federation.NewSnapshot(r.rev, recs))
}

// ready reports whether the endpoint at key is registered and ready.
func (r *testRegistry) ready(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ep, ok := r.records[key].(*straitv1.Endpoint)
	return ok && ep.GetReady()
}

func (r *testRegistry) endpoint(key string) (*straitv1.Endpoint, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ep, ok := r.records[key].(*straitv1.Endpoint)
	return ep, ok
}

func (r *testRegistry) deleted(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.deletes {
		if k == key {
			return true
		}
	}
	return false
}
