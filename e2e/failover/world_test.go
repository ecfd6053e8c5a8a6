package failover

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/etcdcluster"
	"github.com/strait-mesh/strait/e2e/load"
	"github.com/strait-mesh/strait/e2e/netns"
	"github.com/strait-mesh/strait/e2e/toolbin"
	"github.com/strait-mesh/strait/e2e/wait"
	"github.com/strait-mesh/strait/e2e/wan"
	"github.com/strait-mesh/strait/internal/proxycmd/buildflags"
)

// Ports of the processes inside their namespaces.
const (
	ingressPort = 15443 // gateway QUIC ingress (UDP), and its WAN link
	egressPort  = 15444 // gateway egress for the cluster's proxies (TCP)
	adminPort   = 15021 // gateway admin (HTTP)
	inboundPort = 15006 // a pod proxy's mTLS inbound listener
	appPort     = 8080  // the app (load server), on the pod's loopback
)

// Upstream listeners of the proxies, on their namespace's loopback.
const (
	upAny     = "127.0.0.1:18080" // hello.default, any cluster
	upWest    = "127.0.0.1:18081" // hello.default pinned to west
	upCentral = "127.0.0.1:18082" // hello.default pinned to central
)

const (
	service   = "hello"
	namespace = "default"
	// svcPort is the exported port of hello.default.
	svcPort = appPort
)

// clusterDef describes one cluster of the federation.
type clusterDef struct {
	name, region string
	// gateways are the gateway hosts; those in standby are not started
	// with the world (scenario 6 starts them).
	gateways []string
	standby  map[string]bool
	// pods are the hosts of hello.default's endpoints (app + proxy)
	// started with the world; lazyPods are started by a scenario.
	pods, lazyPods []string
	// client is a host running a client-only proxy, or "".
	client string
}

// clusters returns the federation: east holds the callers, west and
// central serve hello.default. Regions differ; west is preferred by east.
func clusters() []clusterDef {
	return []clusterDef{
		{name: "east", region: "us-east", gateways: []string{"gw1", "gw2"}, client: "client", lazyPods: []string{"pod1"}},
		{name: "west", region: "us-west", gateways: []string{"gw1", "gw2"}, standby: map[string]bool{"gw2": true}, pods: []string{"pod1"}},
		{name: "central", region: "us-central", gateways: []string{"gw1"}, pods: []string{"pod1"}},
	}
}

// rtt is the round-trip time the WAN adds between two clusters.
func rtt(a, b string) time.Duration {
	pair := map[[2]string]time.Duration{
		{"east", "west"}:    30 * time.Millisecond,
		{"east", "central"}: 10 * time.Millisecond,
		{"west", "central"}: 40 * time.Millisecond,
	}
	if d, ok := pair[[2]string{a, b}]; ok {
		return d
	}
	return pair[[2]string{b, a}]
}

// etcdCluster names the routed cluster of the 3 etcd members.
const etcdCluster = "etcd"

// world is the running federation shared by the scenarios of one test.
type world struct {
	t    *testing.T
	topo *netns.Topology
	bin  string // the strait binary
	// proxyBin is strait-proxy, the per-pod sidecar as it ships (built
	// with cmd/strait-proxy/build.flags: its federation runs over
	// internal/etcdlite, not clientv3).
	proxyBin string
	dir      string // configs, CA directories, snapshots
	etcd     *etcdcluster.Cluster
	log      *slog.Logger

	defs     map[string]clusterDef
	links    map[string]*wan.Link   // the WAN link in front of each gateway, by "cluster/host"
	gateways map[string]*netns.Proc // by "cluster/host"
	apps     map[string]*netns.Proc // the apps (load servers), by "cluster/host"
	allApps  []*netns.Proc          // every app started, for their journals
	proxies  map[string]*netns.Proc // proxies, by "cluster/host"
	resetKey map[string]string      // stateless reset key, by cluster
}

// quietLogger logs the harness's warnings only.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// newWorld builds the topology, starts etcd and every Strait process, writes
// the exports and the live configuration, and waits until east reaches
// hello.default in west through the whole path. Everything is removed when
// the test ends.
func newWorld(t *testing.T, ctx context.Context) *world {
	t.Helper()
	netns.RequireRoot(t)
	start := time.Now()
	w := &world{
		t: t, dir: t.TempDir(), log: quietLogger(),
		defs: map[string]clusterDef{}, links: map[string]*wan.Link{},
		gateways: map[string]*netns.Proc{}, apps: map[string]*netns.Proc{}, proxies: map[string]*netns.Proc{},
		resetKey: map[string]string{},
	}
	w.bin = buildStrait(t, ctx, w.dir)
	w.proxyBin = buildProxy(t, ctx, w.dir)
	etcdBin, err := toolbin.Path(ctx, "etcd")
	if err != nil {
		t.Fatalf("etcd binary: %v", err)
	}
	spec := netns.Spec{Logger: w.log}
	for _, c := range clusters() {
		w.defs[c.name] = c
		hosts := append(append(append([]string{}, c.gateways...), c.pods...), c.lazyPods...)
		if c.client != "" {
			hosts = append(hosts, c.client)
		}
		spec.Clusters = append(spec.Clusters, netns.ClusterSpec{Name: c.name, Hosts: hosts})
		w.resetKey[c.name] = randomHex(t, 32)
	}
	spec.Clusters = append(spec.Clusters, netns.ClusterSpec{Name: etcdCluster, Hosts: []string{"m1", "m2", "m3"}, Routed: true})
	w.topo = netns.BuildT(t, spec)

	w.etcd, err = etcdcluster.Start(ctx, etcdcluster.Config{Hosts: w.topo.Cluster(etcdCluster).Hosts(), Binary: etcdBin,
		DataDir: filepath.Join(w.dir, "etcd"), Logger: w.log})
	if err != nil {
		t.Fatalf("starting etcd: %v", err)
	}
	t.Cleanup(func() { _ = w.etcd.Close() })

	w.startLinks(ctx)
	w.setLiveConfig(ctx, liveConfig)
	for _, c := range clusters() {
		for _, gw := range c.gateways {
			if !c.standby[gw] {
				w.startGateway(ctx, c.name, gw)
			}
		}
	}
	// West exports first: the oldest export is preferred among regions
	// that rank the same.
	for _, c := range []string{"west", "central"} {
		for _, pod := range w.defs[c].pods {
			w.startPod(ctx, c, pod, serverHealthInterval)
		}
		w.export(ctx, c)
	}
	w.startClient(ctx, "east")
	w.waitServed(ctx, w.client(), upAny, "west", 60*time.Second)
	t.Logf("federation up in %s (logs in %s)", time.Since(start).Round(time.Millisecond), w.topo.LogDir())
	return w
}

// liveConfig is the gateways' live configuration (strait config set),
// tuned for fast failover: a remote gateway that stops answering is
// declared dead after a 1 s idle timeout (keepalives every 250 ms), dials
// give up after 1 s, and the failover policy prefers us-west, then
// us-central. A drain may last 10 s: in session mode a proxy that cannot
// see the drain in etcd (scenario 5) keeps its session through the
// gateway for the session's MaxAge (5 s) and then waits for its streams,
// so the drain must outlast MaxAge plus a request; a drain of 5 s cut 2
// sessions and reset 7 requests in a fresh-clone run.
const liveConfig = `dialTimeout: 1s
headerTimeout: 2s
idleTimeout: 1s
keepAlivePeriod: 0.25s
drainTimeout: 10s
failover:
  regionOrder: [us-west, us-central]
`

// buildStrait builds cmd/strait into dir once for the test run.
func buildStrait(t *testing.T, ctx context.Context, dir string) string {
	t.Helper()
	return goBuild(t, ctx, filepath.Join(dir, "strait"), "github.com/strait-mesh/strait/cmd/strait")
}

// buildProxy builds cmd/strait-proxy into dir with the flags it ships
// with (cmd/strait-proxy/build.flags), as make build and the image do.
func buildProxy(t *testing.T, ctx context.Context, dir string) string {
	t.Helper()
	flags, err := buildflags.Read(filepath.Join("..", "..", "cmd", "strait-proxy", "build.flags"))
	if err != nil {
		t.Fatal(err)
	}
	return goBuild(t, ctx, filepath.Join(dir, "strait-proxy"), "github.com/strait-mesh/strait/cmd/strait-proxy", flags...)
}

// goBuild builds pkg into out with flags and returns out.
func goBuild(t *testing.T, ctx context.Context, out, pkg string, flags ...string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	start := time.Now()
	args := append(append([]string{"build"}, flags...), "-o", out, pkg)
	if b, err := exec.CommandContext(ctx, goBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	t.Logf("built %s in %s", filepath.Base(out), time.Since(start).Round(time.Millisecond))
	return out
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// startLinks starts one WAN link in front of every gateway (as a cloud load
// balancer with its own public address would be), shaping each remote
// cluster's traffic with its round-trip time to the gateway's cluster.
func (w *world) startLinks(ctx context.Context) {
	w.t.Helper()
	for _, c := range clusters() {
		var sources []wan.SourceShape
		for _, o := range clusters() {
			if o.name == c.name {
				continue
			}
			one := wan.Shape{Delay: rtt(c.name, o.name) / 2}
			sources = append(sources, wan.SourceShape{From: w.topo.Cluster(o.name).Subnet(), Forward: one, Reverse: one})
		}
		for _, gw := range c.gateways {
			h := w.topo.Host(c.name, gw)
			link, err := w.topo.StartLink(ctx, wan.LinkConfig{Name: c.name + "-" + gw, Listen: ":" + strconv.Itoa(ingressPort),
				Backends: []string{h.AddrPort(ingressPort)}, Sources: sources, DisableTCP: true, Logger: w.log})
			if err != nil {
				w.t.Fatalf("WAN link for %s: %v", h, err)
			}
			w.links[h.String()] = link
		}
	}
}

// etcdFile is the etcd section of the processes' config files.
func (w *world) etcdFile() map[string]any {
	return map[string]any{"endpoints": w.etcd.Endpoints()}
}

// identityFile is the identity section: the cluster's built-in CA.
func (w *world) identityFile(cluster string) map[string]any {
	return map[string]any{"trustDomain": trustDomain(cluster), "caDir": filepath.Join(w.dir, "ca-"+cluster)}
}

func trustDomain(cluster string) string { return cluster + ".e2e" }

// logLevel is the Strait processes' log level: STRAIT_E2E_LOG_LEVEL, or info.
func logLevel() string {
	if l := os.Getenv("STRAIT_E2E_LOG_LEVEL"); l != "" {
		return l
	}
	return "info"
}

// sessionsMode is the proxies' sessions setting (on or off) from
// STRAIT_E2E_SESSIONS, or "" for the proxy's default.
// STRAIT_E2E_SESSION_PIPELINE sets their sessionPipeline the same way.
func sessionsMode(t testing.TB) string { return envOnOff(t, "STRAIT_E2E_SESSIONS") }

// envOnOff is the value of the environment variable name: on, off, or ""
// when unset. Anything else fails the test.
func envOnOff(t testing.TB, name string) string {
	switch m := os.Getenv(name); m {
	case "", "on", "off":
		return m
	default:
		t.Fatalf("%s=%q: want on or off", name, m)
		return ""
	}
}

// report appends row to the e2e report; with STRAIT_E2E_SESSIONS or
// STRAIT_E2E_SESSION_PIPELINE set, its scenario names the proxies'
// settings, so that the table tells the modes' rows apart.
func report(t *testing.T, row load.Row) {
	t.Helper()
	if m := sessionsMode(t); m != "" {
		row.Scenario += " [sessions " + m
		if p := envOnOff(t, "STRAIT_E2E_SESSION_PIPELINE"); p != "" {
			row.Scenario += ", pipeline " + p
		}
		row.Scenario += "]"
	}
	load.Report(t, row)
}

// writeConfig writes v as JSON (which YAML readers accept) and returns its path.
func (w *world) writeConfig(name string, v any) string {
	w.t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		w.t.Fatal(err)
	}
	path := filepath.Join(w.dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// startGateway starts `strait gateway` on cluster/host, advertising its WAN
// link's address, and waits until it is ready.
func (w *world) startGateway(ctx context.Context, cluster, host string) *netns.Proc {
	w.t.Helper()
	h := w.topo.Host(cluster, host)
	link := w.links[h.String()]
	path := w.writeConfig(fmt.Sprintf("gateway-%s-%s.json", cluster, host), map[string]any{
		"cluster": cluster, "id": host, "region": w.defs[cluster].region,
		"etcd": w.etcdFile(), "identity": w.identityFile(cluster),
		"ingress":           map[string]string{"listen": h.AddrPort(ingressPort), "advertise": link.Addr().String()},
		"egress":            map[string]string{"listen": h.AddrPort(egressPort)},
		"admin":             map[string]string{"listen": h.AddrPort(adminPort)},
		"snapshotPath":      filepath.Join(w.dir, fmt.Sprintf("snapshot-%s-%s.json", cluster, host)),
		"statelessResetKey": w.resetKey[cluster],
		"logLevel":          logLevel(),
	})
	p, err := h.StartProc(netns.ProcConfig{Path: w.bin, Args: []string{"gateway", "--config", path}, Label: "gateway"})
	if err != nil {
		w.t.Fatalf("starting gateway %s: %v", h, err)
	}
	w.gateways[h.String()] = p
	w.waitReady(ctx, p)
	return p
}

// waitReady waits until a gateway logs that it is ready.
func (w *world) waitReady(ctx context.Context, p *netns.Proc) {
	w.t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.WaitLog(rctx, "gateway ready"); err != nil {
		w.t.Fatalf("gateway %s: %v", p.Host(), err)
	}
}

// restartGateway starts an exited gateway again with the same config and
// waits until it is ready.
func (w *world) restartGateway(ctx context.Context, p *netns.Proc) *netns.Proc {
	w.t.Helper()
	np, err := p.Restart()
	if err != nil {
		w.t.Fatalf("restarting gateway %s: %v", p.Host(), err)
	}
	w.gateways[p.Host().String()] = np
	w.waitReady(ctx, np)
	return np
}

// Health-check intervals of the pods' proxies (a check times out after the
// interval, and one failed check withdraws readiness).
const (
	// serverHealthInterval is for the pods of the serving clusters: a
	// 100 ms check flaps readiness when the host is starved of CPU.
	serverHealthInterval = "500ms"
	// localHealthInterval is for east's own endpoint, whose crash scenario
	// 7 measures: the faster the check, the shorter the window.
	localHealthInterval = "100ms"
)

// startPod starts the app (the e2e/load server, which journals every
// request's idempotency key and names its cluster and the caller's SPIFFE
// ID from its proxy's PROXY header) and its proxy (an endpoint of
// hello.default, health-checked every interval) on cluster/host.
func (w *world) startPod(ctx context.Context, cluster, host, interval string) {
	w.t.Helper()
	h := w.topo.Host(cluster, host)
	app, err := h.StartHelper("load-server", "-listen", "127.0.0.1:"+strconv.Itoa(appPort),
		"-cluster", cluster, "-host", host, "-proxy-header", "-journal")
	if err != nil {
		w.t.Fatalf("starting app on %s: %v", h, err)
	}
	w.apps[h.String()] = app
	w.allApps = append(w.allApps, app)
	actx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := app.WaitLog(actx, "listening on"); err != nil {
		w.t.Fatal(err)
	}
	var ups []string
	for _, o := range []string{"west", "central"} {
		if o != cluster {
			ups = append(ups, upstream(o))
		}
	}
	w.startProxy(ctx, h, map[string]any{
		"cluster": cluster, "namespace": namespace, "service": service, "serviceAccount": service,
		"id": service + "-" + cluster + "-" + host, "region": w.defs[cluster].region,
		"inbound":     map[string]string{"listen": h.AddrPort(inboundPort)},
		"app":         "127.0.0.1:" + strconv.Itoa(appPort),
		"ports":       []map[string]any{{"name": "http", "port": svcPort}},
		"upstreams":   ups,
		"healthCheck": map[string]string{"interval": interval},
	})
}

// upstream is the upstream listener of hello.default pinned to cluster.
func upstream(cluster string) string {
	listen := map[string]string{"west": upWest, "central": upCentral}[cluster]
	return fmt.Sprintf("%s.%s.%s:%d=%s", service, namespace, cluster, svcPort, listen)
}

// startClient starts the client-only proxy of cluster's client host, with
// upstreams for hello.default in any cluster and pinned to each server.
func (w *world) startClient(ctx context.Context, cluster string) {
	w.t.Helper()
	h := w.topo.Host(cluster, w.defs[cluster].client)
	// It logs at debug level: its "connection closed" line for each
	// relayed connection is the evidence that a failed request had got
	// past the point of retry (see verdict).
	w.startProxy(ctx, h, map[string]any{
		"cluster": cluster, "serviceAccount": "client", "id": "client-" + cluster, "region": w.defs[cluster].region,
		"upstreams": []string{fmt.Sprintf("%s.%s:%d=%s", service, namespace, svcPort, upAny), upstream("west"), upstream("central")},
		"logLevel":  "debug",
		"admin":     map[string]string{"listen": h.AddrPort(clientAdminPort)},
	})
}

// startProxy writes a proxy config (cfg plus etcd, identity, snapshot and
// log level) and starts `strait proxy` on h.
func (w *world) startProxy(ctx context.Context, h *netns.Host, cfg map[string]any) *netns.Proc {
	w.t.Helper()
	cluster := h.Cluster()
	cfg["etcd"], cfg["identity"] = w.etcdFile(), w.identityFile(cluster)
	cfg["snapshotPath"] = filepath.Join(w.dir, fmt.Sprintf("snapshot-proxy-%s-%s.json", cluster, h.Name()))
	cfg["drainTimeout"] = "5s"
	if m := sessionsMode(w.t); m != "" {
		cfg["sessions"] = m
	}
	if m := envOnOff(w.t, "STRAIT_E2E_SESSION_PIPELINE"); m != "" {
		cfg["sessionPipeline"] = m
	}
	if cfg["logLevel"] == nil {
		cfg["logLevel"] = logLevel()
	}
	path := w.writeConfig(fmt.Sprintf("proxy-%s-%s.json", cluster, h.Name()), cfg)
	p, err := h.StartProc(netns.ProcConfig{Path: w.proxyBin, Args: []string{"--config", path}, Label: "proxy"})
	if err != nil {
		w.t.Fatalf("starting proxy on %s: %v", h, err)
	}
	w.proxies[h.String()] = p
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.WaitLog(pctx, "proxy started"); err != nil {
		w.t.Fatal(err)
	}
	return p
}

// appKeys returns the idempotency keys every app started so far has
// journaled (killed ones included: their journal is their log file), with
// how many times each arrived.
func (w *world) appKeys() map[string]int {
	w.t.Helper()
	keys := map[string]int{}
	for _, app := range w.allApps {
		got, err := load.ReadJournal(strings.NewReader(app.Log()))
		if err != nil {
			w.t.Errorf("journal of %s: %v", app.Host(), err)
		}
		for k, n := range got {
			keys[k] += n
		}
	}
	return keys
}

// client returns east's client host.
func (w *world) client() *netns.Host { return w.topo.Host("east", w.defs["east"].client) }

// strait runs a one-shot strait command against etcd from east's client
// host and returns its output.
func (w *world) strait(ctx context.Context, args ...string) string {
	w.t.Helper()
	args = append(args, "--etcd", strings.Join(w.etcd.Endpoints(), ","))
	out, err := w.client().Output(ctx, w.bin, args...)
	if err != nil {
		w.t.Fatalf("strait %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// export exports hello.default from cluster to every other cluster's trust
// domain.
func (w *world) export(ctx context.Context, cluster string) {
	w.t.Helper()
	var consumers []string
	for _, c := range clusters() {
		if c.name != cluster {
			consumers = append(consumers, "spiffe://"+trustDomain(c.name))
		}
	}
	w.strait(ctx, "export", service, "--namespace", namespace, "--cluster", cluster,
		"--port", fmt.Sprintf("http:%d/TCP", svcPort), "--consumers", strings.Join(consumers, ","))
}

// setLiveConfig replaces the global gateway configuration.
func (w *world) setLiveConfig(ctx context.Context, yaml string) {
	w.t.Helper()
	path := filepath.Join(w.dir, "gateway-config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		w.t.Fatal(err)
	}
	w.strait(ctx, "config", "set", "-f", path)
}

// setClusterConfig replaces cluster's own gateway configuration, which is
// merged over the global one.
func (w *world) setClusterConfig(ctx context.Context, cluster, yaml string) {
	w.t.Helper()
	path := filepath.Join(w.dir, "gateway-config-"+cluster+".yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		w.t.Fatal(err)
	}
	w.strait(ctx, "config", "set", "--cluster", cluster, "-f", path)
}

// waitServed polls with curl through from's upstream listener until the
// answer comes from cluster.
func (w *world) waitServed(ctx context.Context, from *netns.Host, listen, cluster string, timeout time.Duration) {
	w.t.Helper()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	err := wait.Until(wctx, 200*time.Millisecond, func(ctx context.Context) (bool, error) {
		body, err := load.Curl(ctx, from, "http://"+listen+"/", 3*time.Second)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = body
		return load.ParseCluster([]byte(body)) == cluster, nil
	})
	if err != nil {
		w.t.Fatalf("waiting for %s to reach hello.default in %s through %s: %v (last: %s)", from, cluster, listen, err, strings.TrimSpace(last))
	}
}

// gatewayHosts returns cluster's gateway hosts that run a gateway.
func (w *world) gatewayHosts(cluster string) []*netns.Host {
	var out []*netns.Host
	for _, gw := range w.defs[cluster].gateways {
		h := w.topo.Host(cluster, gw)
		if p := w.gateways[h.String()]; p != nil {
			if exited, _ := p.Exited(); !exited {
				out = append(out, h)
			}
		}
	}
	return out
}

// partition cuts cluster off the WAN: its links drop every datagram, and
// the other clusters' links drop what comes from it.
func (w *world) partition(cluster string) {
	subnet := w.topo.Cluster(cluster).Subnet()
	for key, l := range w.links {
		if strings.HasPrefix(key, cluster+"/") {
			l.Partition()
		} else {
			l.PartitionFrom(subnet)
		}
	}
}

// heal undoes partition.
func (w *world) heal(cluster string) {
	subnet := w.topo.Cluster(cluster).Subnet()
	for key, l := range w.links {
		if strings.HasPrefix(key, cluster+"/") {
			l.Heal()
		} else {
			l.HealFrom(subnet)
		}
	}
}
