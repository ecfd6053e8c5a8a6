package scale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/gateway"
	"github.com/strait-mesh/strait/internal/demo"
	"github.com/strait-mesh/strait/internal/node"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/proxy"
	"github.com/strait-mesh/strait/trust"
)

// The real clusters: realServer exports realService, served by a real
// proxy in front of an echo app; realClient's proxy reaches it through
// both clusters' real gateways (QUIC between the gateways, end-to-end mTLS
// between the proxies).
const (
	realServer  = "real-b"
	realClient  = "real-a"
	realService = "echo"
	realPort    = 7000
)

var realKey = federation.ServiceKey{Namespace: "shop", Name: realService}

// realCluster is a cluster of real Strait components among the simulated
// ones: a node (watch cache, registrar, bundle store, built-in CA), a
// gateway and a proxy, wired as `strait gateway` and `strait proxy` wire
// them.
type realCluster struct {
	name  string
	node  *node.Node
	gw    *gateway.Gateway
	proxy *proxy.Proxy
	// reg holds the metrics of the node, gateway and proxy.
	reg *prometheus.Registry
	// app is the echo app's address and echo the app (the server
	// cluster's).
	app   string
	echo  *demo.EchoServer
	tasks []func(context.Context) error
}

// RealFigures are what the real components measured.
type RealFigures struct {
	// Sync is, per real cluster, the time from start until its node's
	// cache synced, its gateway and its proxy were ready.
	Sync map[string]time.Duration
	// Heap is, per real cluster, the heap its components hold once ready
	// (node with its cache, gateway, proxy).
	Heap map[string]int64
	// FirstRoute is the time from the client cluster's start until a
	// connection through its proxy and both gateways was first echoed.
	FirstRoute time.Duration
}

// startReal starts the two real clusters one after the other, measuring
// each alone, then waits for a first connection through them.
func (s *sim) startReal(ctx context.Context, rep *Report) error {
	rep.Real = RealFigures{Sync: map[string]time.Duration{}, Heap: map[string]int64{}}
	for _, name := range []string{realServer, realClient} {
		heapBefore := heapInUse()
		start := time.Now()
		rc, err := s.newReal(ctx, name)
		if err != nil {
			return err
		}
		for _, task := range rc.tasks {
			s.regWG.Go(func() {
				if err := task(ctx); err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
					s.cfg.Logf("real cluster %s: %v", name, err)
				}
			})
		}
		if err := rc.ready(ctx); err != nil {
			return err
		}
		rep.Real.Sync[name] = time.Since(start)
		rep.Real.Heap[name] = int64(heapInUse()) - int64(heapBefore)
		s.cfg.Logf("real cluster %s (node, gateway, proxy) ready in %s, heap %d MiB", name,
			rep.Real.Sync[name].Round(time.Millisecond), rep.Real.Heap[name]>>20)
		s.real = append(s.real, rc)
		if name == realClient {
			if err := s.firstRoute(ctx, start, rep); err != nil {
				return err
			}
		}
	}
	return nil
}

// ready waits until the cluster's cache synced and its gateway and proxy
// are ready.
func (rc *realCluster) ready(ctx context.Context) error {
	for _, ch := range []<-chan struct{}{rc.node.Cache.Synced(), rc.gw.Ready(), rc.proxy.Ready()} {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// newReal builds a real cluster; it starts nothing.
func (s *sim) newReal(ctx context.Context, name string) (*realCluster, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain(name))
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(s.cfg.Dir, name)
	log := slog.New(newBookHandler(logfWriter(s.cfg.Logf), &s.logs)).With("cluster", name)
	ca, err := trust.NewCA(trust.CAConfig{TrustDomain: td, Dir: filepath.Join(dir, "ca")})
	if err != nil {
		return nil, fmt.Errorf("scale: %s: %w", name, err)
	}
	reg := prometheus.NewRegistry()
	tm, err := trust.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("scale: %s: %w", name, err)
	}
	cli, err := s.dial()
	if err != nil {
		return nil, err
	}
	rc := &realCluster{name: name, reg: reg}
	rc.tasks = append(rc.tasks, func(ctx context.Context) error { <-ctx.Done(); return cli.Close() })
	rc.node, err = node.New(node.Config{Cluster: name, TrustDomain: td, Etcd: cli, Keyspace: s.ks,
		SnapshotPath: filepath.Join(dir, "snapshot.json"), LeaseTTL: s.cfg.LeaseTTL,
		LocalBundle: ca, CA: ca, Logger: log, Metrics: reg, TrustMetrics: tm})
	if err != nil {
		return nil, fmt.Errorf("scale: %s: %w", name, err)
	}
	rc.tasks = append(rc.tasks, rc.node.Run)
	svids := func(id spiffeid.ID) (*trust.CASource, error) {
		src, err := trust.NewCASource(trust.CASourceConfig{CA: ca, ID: id, Logger: log, Metrics: tm})
		if err != nil {
			return nil, fmt.Errorf("scale: %s: %w", name, err)
		}
		rc.tasks = append(rc.tasks, src.Run)
		return src, nil
	}
	gwID, err := trust.GatewayID(td, name)
	if err != nil {
		return nil, err
	}
	gwSVIDs, err := svids(gwID)
	if err != nil {
		return nil, err
	}
	rc.gw, err = gateway.New(gateway.Config{Cluster: name, ID: "gw-0", TrustDomain: td, Region: "r0", Zone: "a",
		IngressListenAddr: "127.0.0.1:0", EgressListenAddr: "127.0.0.1:0", AdminListenAddr: "127.0.0.1:0",
		SVIDs: gwSVIDs, Bundles: rc.node.Bundles, Snapshots: rc.node.Cache, Registry: rc.node.Registrar, Keyspace: s.ks,
		Logger: log.With("component", "gateway"), Metrics: reg, Gatherer: reg, TrustMetrics: tm,
		DrainTimeout:  time.Second,
		EndpointCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, EtcdEndpoints: s.etcd.endpoints()})
	if err != nil {
		return nil, fmt.Errorf("scale: %s: %w", name, err)
	}
	rc.tasks = append(rc.tasks, rc.gw.Run)
	pcfg := proxy.Config{Cluster: name, Namespace: realKey.Namespace, ID: "proxy-0", Region: "r0", Zone: "a",
		Bundles: rc.node.Bundles, Snapshots: rc.node.Cache, Registry: rc.node.Registrar, Keyspace: s.ks,
		Logger: log.With("component", "proxy"), Metrics: reg, TrustMetrics: tm, DrainTimeout: time.Second}
	ports := []*straitv1.ServicePort{{Name: "tcp", Port: realPort, Protocol: straitv1.Protocol_PROTOCOL_TCP}}
	if name == realServer {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("scale: %s app: %w", name, err)
		}
		rc.app = ln.Addr().String()
		echo := &demo.EchoServer{}
		rc.echo = echo
		rc.tasks = append(rc.tasks, func(ctx context.Context) error {
			go func() { <-ctx.Done(); _ = echo.Close() }()
			_ = echo.Serve(ln)
			return ctx.Err()
		})
		pcfg.Service, pcfg.ServiceAccount = realService, realService
		pcfg.InboundListenAddr, pcfg.AppAddr, pcfg.Ports = "127.0.0.1:0", ln.Addr().String(), ports
		pcfg.HealthCheck = proxy.HealthCheck{Interval: time.Second}
		if _, err := rc.node.Store.PutExport(ctx, &straitv1.Export{Cluster: name, Namespace: realKey.Namespace,
			Service: realService, Ports: ports, Servers: []string{realService},
			Consumers: []string{"spiffe://" + trustDomain(realClient)}}); err != nil {
			return nil, fmt.Errorf("scale: export %s: %w", realService, err)
		}
	} else {
		pcfg.ServiceAccount = "client"
		pcfg.Upstreams = []proxy.Upstream{{Service: realKey, Port: realPort, ListenAddr: "127.0.0.1:0"}}
	}
	pid, err := trust.WorkloadID(td, realKey.Namespace, pcfg.ServiceAccount)
	if err != nil {
		return nil, err
	}
	if pcfg.SVIDs, err = svids(pid); err != nil {
		return nil, err
	}
	if rc.proxy, err = proxy.New(pcfg); err != nil {
		return nil, fmt.Errorf("scale: %s proxy: %w", name, err)
	}
	rc.tasks = append(rc.tasks, rc.proxy.Run)
	return rc, nil
}

// firstRoute waits until a connection through the client's proxy, both
// gateways and the server's proxy is echoed.
func (s *sim) firstRoute(ctx context.Context, start time.Time, rep *Report) error {
	deadline := time.Now().Add(2 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		if _, _, _, last = s.route(ctx); last == nil {
			rep.Real.FirstRoute = time.Since(start)
			s.cfg.Logf("first connection routed through the real gateways %s after the client cluster started",
				rep.Real.FirstRoute.Round(time.Millisecond))
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("scale: no connection routed through the real gateways within 2m: %w", last)
}

// logfWriter writes log lines to Logf.
type logfWriter func(format string, args ...any)

func (w logfWriter) Write(p []byte) (int, error) {
	w("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
