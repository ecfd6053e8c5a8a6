package scale

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// Config describes a run. Zero values mean the documented default.
type Config struct {
	// Clusters simulated. Default 1000.
	Clusters int
	// ExportsPerCluster, each of a service every cluster exports (global
	// services). Default 100.
	ExportsPerCluster int
	// EndpointsPerExport. Default 3.
	EndpointsPerExport int
	// Caches are the real federation.Cache instances watching. Default 10.
	Caches int
	// Churn are the shares of endpoints changing readiness per second,
	// one churn phase per share, in order. Default 0.01 (1 %).
	Churn []float64
	// Duration of each churn phase. Default 60s.
	Duration time.Duration
	// ListPageSizes, when set, are page sizes to list the whole keyspace
	// with, one client alone, before the caches start.
	ListPageSizes []int64
	// SkipReal leaves out the real clusters (two gateways and two
	// proxies, see startReal).
	SkipReal bool
	// HeapProfile, when set, is a file where the harness writes a heap
	// profile (pprof) once every cache and real cluster is ready.
	HeapProfile string
	// LeaseTTL of every registrar. Default federation.DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Heartbeat, when positive, makes the simulated gateways rewrite
	// their records this often and the caches withdraw a gateway silent
	// for three heartbeats (federation.RegistrarConfig.Heartbeat and
	// CacheConfig.GatewayStaleAfter). Zero (the default, as `strait`
	// runs): no heartbeat, liveness on the leases alone.
	Heartbeat time.Duration
	// PageSize is the caches' list page size. Zero means the cache's
	// default (federation.DefaultPageSize).
	PageSize int64
	// Clients are the etcd clients the simulated clusters' registrars
	// share (the clusters whose gateways die have their own). Default:
	// one per cluster. A client keeps its leases alive on one stream, and
	// etcd serves a stream's keepalives one after the other (v3rpc's
	// LeaseKeepAlive loop: receive, renew, which a follower forwards to the
	// leader, send), so a few clients holding thousands of leases starve
	// them: with 8 clients for 3,000 leases, etcd received about 7,000
	// keepalives in 3.5 minutes instead of 900 per second and let 3,450
	// leases expire while registering. Real gateways and proxies each
	// have their own client. The seed uses 8 of them at most.
	Clients int
	// EtcdHeartbeat and EtcdElectionTimeout are the members'
	// --heartbeat-interval and --election-timeout. Defaults 500ms and 5s,
	// not etcd's 100ms and 1s: the members share this machine's 2 CPUs
	// with the harness (writers of 1,000 clusters, 10 caches decoding
	// their lists, the real clusters) and other work, at the harness'
	// niceness, and a leader's raft loop went unscheduled for up to 2.2-3.2 s
	// (its "leader failed to send out heartbeat on time" warnings, run
	// of 15:34 UTC at load 15-27): with a 1 s election timeout every such
	// stall is an election, each election fails the requests in flight,
	// and leases whose keepalives cannot reach a leader for a TTL expire.
	// etcd's tuning guide sets these from the members' environment; a
	// deployment on dedicated cores keeps the defaults.
	EtcdHeartbeat       time.Duration
	EtcdElectionTimeout time.Duration
	// EtcdBinary is the etcd binary. Required.
	EtcdBinary string
	// Dir holds etcd's data and logs and a cache's snapshot file. Required.
	Dir string
	// Logf receives progress lines. Nil discards them.
	Logf func(format string, args ...any)
}

// deaths is how many clusters' gateways die (and return) during churn.
const deaths = 2

func (c *Config) populate() {
	if c.Clusters == 0 {
		c.Clusters = 1000
	}
	if c.ExportsPerCluster == 0 {
		c.ExportsPerCluster = 100
	}
	if c.EndpointsPerExport == 0 {
		c.EndpointsPerExport = 3
	}
	if c.Caches == 0 {
		c.Caches = 10
	}
	if len(c.Churn) == 0 {
		c.Churn = []float64{0.01}
	}
	if c.Duration == 0 {
		c.Duration = 60 * time.Second
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = federation.DefaultLeaseTTL
	}
	if c.Clients == 0 {
		c.Clients = c.Clusters
	}
	if c.EtcdHeartbeat == 0 {
		c.EtcdHeartbeat = 500 * time.Millisecond
	}
	if c.EtcdElectionTimeout == 0 {
		c.EtcdElectionTimeout = 5 * time.Second
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

func (c *Config) validate() error {
	var errs *multierror.Error
	if c.Clusters < deaths+1 || c.ExportsPerCluster < 1 || c.EndpointsPerExport < 1 {
		errs = multierror.Append(errs, fmt.Errorf("need at least %d clusters, 1 export and 1 endpoint", deaths+1))
	}
	if c.EtcdHeartbeat < time.Millisecond || c.EtcdElectionTimeout < 5*c.EtcdHeartbeat {
		errs = multierror.Append(errs, fmt.Errorf("etcd heartbeat %s and election timeout %s: want a heartbeat of at least 1ms and an election timeout of at least 5 heartbeats (etcd's own rule)",
			c.EtcdHeartbeat, c.EtcdElectionTimeout))
	}
	if min := 3 * c.EtcdElectionTimeout / 2; c.LeaseTTL < min {
		// etcd grants such a lease with its minimum TTL instead.
		errs = multierror.Append(errs, fmt.Errorf("lease TTL %s is below etcd's minimum TTL of 1.5 election timeouts (%s): lower the election timeout", c.LeaseTTL, min))
	}
	if c.Clients < 0 {
		errs = multierror.Append(errs, fmt.Errorf("clients %d: must not be negative", c.Clients))
	}
	if c.Caches < 1 || c.Caches > 64 {
		errs = multierror.Append(errs, fmt.Errorf("caches %d: want 1 to 64", c.Caches))
	}
	if slices.ContainsFunc(c.Churn, func(x float64) bool { return x < 0 }) || c.Duration < 0 || c.LeaseTTL < 2*time.Second {
		errs = multierror.Append(errs, errors.New("churn and duration must not be negative, lease TTL at least 2s"))
	}
	if slices.ContainsFunc(c.ListPageSizes, func(x int64) bool { return x < 1 }) {
		errs = multierror.Append(errs, errors.New("list page sizes must be positive"))
	}
	if c.EtcdBinary == "" || c.Dir == "" {
		errs = multierror.Append(errs, errors.New("an etcd binary and a directory are required"))
	}
	if err := errs.ErrorOrNil(); err != nil {
		return fmt.Errorf("scale: config: %w", err)
	}
	return nil
}

// sim is one run.
type sim struct {
	cfg     Config
	ks      federation.Keyspace
	etcd    *etcdCluster
	clients []*clientv3.Client
	ca      []byte
	rng     *mrand.Rand

	// endpoint registrars by cluster, and the readiness they last wrote.
	endpointRegs []*federation.Registrar
	readyMu      sync.Mutex
	ready        map[string]bool // endpoint key → ready
	inFlight     map[string]bool // endpoint key → a probe awaits it

	gateways []*gatewayPair // by cluster
	caches   []*federation.Cache
	real     []*realCluster
	// logs are the real clusters' WARN lines; sched samples how this
	// process is scheduled.
	logs     logBook
	sched    schedMonitor
	logGrace time.Duration // zero: defaultRouteLogGrace
	probes   probes
	// bundleSeq is the sequence of the last bundle rotation.
	bundleSeq uint64
	regWG     sync.WaitGroup
}

// gatewayPair is a cluster's two gateway registrars; the clusters whose
// gateways die have their own client, so that closing it stops their
// keepalives without revoking the leases (as a killed process would).
type gatewayPair struct {
	cancel  context.CancelFunc
	client  *clientv3.Client // nil: a shared client
	done    chan struct{}
	regs    []*federation.Registrar
	started time.Time // both records' StartedAt: tells this pair's records from an earlier pair's
	killed  bool
}

// Run simulates the federation cfg describes, measures it and returns the
// report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.populate()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &sim{cfg: cfg, rng: mrand.New(mrand.NewPCG(1, 2)), ready: map[string]bool{}, inFlight: map[string]bool{}, bundleSeq: 1}
	rep := &Report{Config: cfg, CPUs: runtime.NumCPU()}
	rep.LoadBefore = loadAverage()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var err error
	if s.ca, err = selfSignedCA(); err != nil {
		return nil, err
	}
	quota := int64(8) << 30
	if s.etcd, err = startEtcd(ctx, cfg.EtcdBinary, cfg.Dir, 3, quota, cfg.EtcdHeartbeat, cfg.EtcdElectionTimeout); err != nil {
		return nil, err
	}
	defer s.etcd.kill()
	for range cfg.Clients {
		cli, err := s.dial()
		if err != nil {
			return nil, err
		}
		defer func() { _ = cli.Close() }()
		s.clients = append(s.clients, cli)
	}
	defer func() {
		cancel()
		s.regWG.Wait()
	}()
	s.regWG.Go(func() { s.sched.run(ctx) })

	start := time.Now()
	if err := s.seed(ctx); err != nil {
		return nil, err
	}
	rep.SeedTime = time.Since(start)
	cfg.Logf("seeded %d exports and %d bundles in %s", cfg.Clusters*cfg.ExportsPerCluster, cfg.Clusters, rep.SeedTime.Round(time.Millisecond))

	start = time.Now()
	if err := s.register(ctx); err != nil {
		return nil, err
	}
	rep.RegisterTime = time.Since(start)
	cfg.Logf("registered %d gateways and %d endpoints under %d leases in %s", 2*cfg.Clusters,
		cfg.Clusters*cfg.ExportsPerCluster*cfg.EndpointsPerExport, 3*cfg.Clusters, rep.RegisterTime.Round(time.Millisecond))

	if err := s.measureLists(ctx, rep); err != nil {
		return nil, err
	}
	if err := s.startCaches(ctx, rep); err != nil {
		return nil, err
	}
	if !cfg.SkipReal {
		if err := s.startReal(ctx, rep); err != nil {
			return nil, err
		}
	}
	if cfg.HeapProfile != "" {
		if err := writeHeapProfile(cfg.HeapProfile); err != nil {
			return nil, err
		}
	}
	if err := s.churn(ctx, rep); err != nil {
		return nil, err
	}
	rep.LoadAfter = loadAverage()
	return rep, nil
}

func (s *sim) dial() (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.etcd.endpoints(), DialTimeout: 10 * time.Second,
		Logger: zap.NewNop(), MaxCallSendMsgSize: 64 << 20, MaxCallRecvMsgSize: 256 << 20})
	if err != nil {
		return nil, fmt.Errorf("scale: etcd client: %w", err)
	}
	return cli, nil
}

func clusterName(i int) string { return fmt.Sprintf("c%04d", i) }
func serviceName(i int) string { return fmt.Sprintf("svc-%03d", i) }
func trustDomain(c string) string {
	return c + ".scale.example"
}

// seed writes the durable records: every export and every bundle.
func (s *sim) seed(ctx context.Context) error {
	created := time.Unix(1_700_000_000, 0)
	work := make(chan []clientv3.Op)
	writers := s.clients[:min(len(s.clients), 8)]
	errc := make(chan error, len(writers))
	var wg sync.WaitGroup
	for _, cli := range writers {
		wg.Go(func() {
			for ops := range work {
				if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
					errc <- fmt.Errorf("scale: seed: %w", err)
					return
				}
			}
		})
	}
	var ops []clientv3.Op
	send := func() bool {
		select {
		case work <- ops:
		case err := <-errc:
			errc <- err
			return false
		}
		ops = nil
		return true
	}
	ok := true
	for c := 0; c < s.cfg.Clusters && ok; c++ {
		cluster := clusterName(c)
		b := &straitv1.TrustBundle{TrustDomain: trustDomain(cluster), Sequence: 1, X509Authorities: [][]byte{s.ca},
			UpdatedAt: timestamppb.Now()}
		ops = append(ops, clientv3.OpPut(s.ks.Bundle(b.GetTrustDomain()), mustMarshal(b)))
		for e := 0; e < s.cfg.ExportsPerCluster && ok; e++ {
			exp := &straitv1.Export{Cluster: cluster, Namespace: "shop", Service: serviceName(e),
				Ports:     []*straitv1.ServicePort{{Name: "http", Port: 8080, Protocol: straitv1.Protocol_PROTOCOL_TCP}},
				CreatedAt: timestamppb.New(created.Add(time.Duration(c) * time.Second))}
			ops = append(ops, clientv3.OpPut(s.ks.Export(cluster, "shop", exp.GetService()), mustMarshal(exp)))
			if len(ops) >= 64 {
				ok = send()
			}
		}
	}
	if ok && len(ops) > 0 {
		send()
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func mustMarshal(m proto.Message) string {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err) // only for messages this package builds
	}
	return string(b)
}

// register starts every cluster's endpoint registrar and waits until all
// have written their records, then every cluster's gateway registrars.
// Endpoints go first, as the gateways' heartbeats (with -heartbeat, a
// write per gateway each time) would compete with them for etcd's writes.
func (s *sim) register(ctx context.Context) error {
	for c := range s.cfg.Clusters {
		cluster := clusterName(c)
		cli := s.clients[c%len(s.clients)]
		reg, err := federation.NewRegistrar(federation.RegistrarConfig{Client: cli, TTL: s.cfg.LeaseTTL})
		if err != nil {
			return err
		}
		for e := range s.cfg.ExportsPerCluster {
			for i := range s.cfg.EndpointsPerExport {
				key, ep := s.endpoint(cluster, e, i, true)
				reg.Put(key, ep)
				s.ready[key] = true
			}
		}
		s.regWG.Go(func() { _ = reg.Run(ctx) })
		s.endpointRegs = append(s.endpointRegs, reg)
	}
	for _, r := range s.endpointRegs {
		select {
		case <-r.Registered():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for c := range s.cfg.Clusters {
		pair, err := s.startGateways(ctx, c, time.Now())
		if err != nil {
			return err
		}
		s.gateways = append(s.gateways, pair)
	}
	return nil
}

// endpoint returns the key and record of endpoint i of export e.
func (s *sim) endpoint(cluster string, e, i int, ready bool) (string, *straitv1.Endpoint) {
	svc := serviceName(e)
	id := fmt.Sprintf("ep-%d", i)
	ep := &straitv1.Endpoint{Cluster: cluster, Namespace: "shop", Service: svc, Id: id,
		Address: fmt.Sprintf("10.%d.%d.%d:15006", e%250, i%250, 1+e/250), Ready: ready,
		Ports:    []*straitv1.ServicePort{{Name: "http", Port: 8080, Protocol: straitv1.Protocol_PROTOCOL_TCP}},
		SpiffeId: "spiffe://" + trustDomain(cluster) + "/ns/shop/sa/" + svc}
	return s.ks.Endpoint(cluster, "shop", svc, id), ep
}

// startGateways runs cluster c's two gateway registrars, on their own
// client for the clusters whose gateways will die; both records carry
// started as their StartedAt.
func (s *sim) startGateways(ctx context.Context, c int, started time.Time) (*gatewayPair, error) {
	cluster := clusterName(c)
	pair := &gatewayPair{done: make(chan struct{}), started: started}
	cli := s.clients[c%len(s.clients)]
	if c < deaths {
		own, err := s.dial()
		if err != nil {
			return nil, err
		}
		pair.client, cli = own, own
	}
	gctx, cancel := context.WithCancel(ctx)
	pair.cancel = cancel
	var regs []*federation.Registrar
	for g := range 2 {
		id := fmt.Sprintf("gw-%d", g)
		reg, err := federation.NewRegistrar(federation.RegistrarConfig{Client: cli, TTL: s.cfg.LeaseTTL, Heartbeat: s.cfg.Heartbeat})
		if err != nil {
			cancel()
			return nil, err
		}
		td := trustDomain(cluster)
		reg.Put(s.ks.Gateway(cluster, id), &straitv1.Gateway{Cluster: cluster, Id: id, TrustDomain: td,
			SpiffeId: "spiffe://" + td + "/strait/gateway/" + cluster,
			Address:  fmt.Sprintf("10.255.%d.%d:15443", c/250, 1+c%250), EgressAddress: fmt.Sprintf("10.255.%d.%d:15001", c/250, 1+c%250),
			Region: fmt.Sprintf("r%d", c%5), Zone: "a", StartedAt: timestamppb.New(started)})
		regs = append(regs, reg)
	}
	pair.regs = regs
	var wg sync.WaitGroup
	for _, r := range regs {
		wg.Go(func() { _ = r.Run(gctx) })
	}
	s.regWG.Go(func() { wg.Wait(); close(pair.done) })
	for _, r := range regs {
		select {
		case <-r.Registered():
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return pair, nil
}

// kill stops a cluster's gateways as a SIGKILL would: their client goes
// away first, so their leases are neither renewed nor revoked and expire
// after their TTL. A pair dies once.
func (p *gatewayPair) kill() error {
	if p.killed {
		return errors.New("scale: gateways killed twice")
	}
	if p.client == nil {
		return errors.New("scale: gateways on a shared client cannot die alone")
	}
	p.killed = true
	_ = p.client.Close()
	p.cancel()
	<-p.done
	return nil
}

// leases are the pair's current leases (clientv3.NoLease for a registrar
// without one).
func (p *gatewayPair) leases() []clientv3.LeaseID {
	var ids []clientv3.LeaseID
	for _, r := range p.regs {
		ids = append(ids, r.LeaseID())
	}
	return ids
}

// gatewaysOf counts the gateway records of cluster in snap written by the
// pair started at started.
func gatewaysOf(snap *federation.Snapshot, cluster string, started time.Time) int {
	n := 0
	for _, g := range snap.Gateways(cluster) {
		if g.GetStartedAt().AsTime().Equal(started) {
			n++
		}
	}
	return n
}

// measureLists counts the keys, then lists the whole keyspace with each
// page size of ListPageSizes, one client alone, as a cache's first list
// does (federation.ListSnapshot pages the same way).
func (s *sim) measureLists(ctx context.Context, rep *Report) error {
	cli := s.clients[0]
	resp, err := cli.Get(ctx, s.ks.Root(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("scale: count keys: %w", err)
	}
	rep.Keys = int(resp.Count)
	for _, size := range s.cfg.ListPageSizes {
		l := ListFigures{PageSize: size}
		start := time.Now()
		from, end := s.ks.Root(), clientv3.GetPrefixRangeEnd(s.ks.Root())
		var rev int64
		for {
			opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(size)}
			if rev != 0 {
				opts = append(opts, clientv3.WithRev(rev))
			}
			resp, err := cli.Get(ctx, from, opts...)
			if err != nil {
				return fmt.Errorf("scale: list with pages of %d: %w", size, err)
			}
			rev = resp.Header.Revision
			l.Pages++
			n := 0
			for _, kv := range resp.Kvs {
				n += len(kv.Key) + len(kv.Value)
			}
			l.LargestBytes = max(l.LargestBytes, n)
			if !resp.More || len(resp.Kvs) == 0 {
				break
			}
			from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		}
		l.Time = time.Since(start)
		rep.Lists = append(rep.Lists, l)
		s.cfg.Logf("listed %d keys in pages of %d in %s (%d pages, largest %d KiB)", rep.Keys, size, l.Time.Round(time.Millisecond), l.Pages, l.LargestBytes>>10)
	}
	return nil
}

// startCaches starts the first cache alone (its sync time and heap are
// measured on a quiet process), then the others together.
func (s *sim) startCaches(ctx context.Context, rep *Report) error {
	heapBefore := heapInUse()
	start := time.Now()
	first, err := s.startCache(ctx, 0)
	if err != nil {
		return err
	}
	rep.FirstSync = time.Since(start)
	rep.HeapPerCache = int64(heapInUse()) - int64(heapBefore)
	rep.Services = len(first.Snapshot().Services())
	s.cfg.Logf("first cache synced in %s, heap %d MiB", rep.FirstSync.Round(time.Millisecond), rep.HeapPerCache>>20)
	start = time.Now()
	errc := make(chan error, s.cfg.Caches)
	var wg sync.WaitGroup
	for i := 1; i < s.cfg.Caches; i++ {
		wg.Go(func() {
			if _, err := s.startCache(ctx, i); err != nil {
				errc <- err
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	rep.AllSync = time.Since(start)
	rep.HeapAllCaches = heapInUse()
	rep.HeapPerCacheAll = (int64(rep.HeapAllCaches) - int64(heapBefore)) / int64(s.cfg.Caches)
	s.cfg.Logf("%d more caches synced together in %s", s.cfg.Caches-1, rep.AllSync.Round(time.Millisecond))
	if fi, err := waitFile(ctx, filepath.Join(s.cfg.Dir, "snapshot.json")); err == nil {
		rep.SnapshotFileBytes = fi.Size()
	}
	return nil
}

// startCache runs cache i on its own client until ctx ends and waits for
// its first sync; cache 1 persists its snapshot.
func (s *sim) startCache(ctx context.Context, i int) (*federation.Cache, error) {
	cli, err := s.dial()
	if err != nil {
		return nil, err
	}
	cfg := federation.CacheConfig{Sources: []federation.Source{{Client: cli}}, GatewayStaleAfter: 3 * max(s.cfg.Heartbeat, 0),
		PageSize: s.cfg.PageSize}
	// The second cache persists its snapshot: the first one's heap is
	// measured, and a snapshot file being written would count in it.
	if i == 1 || s.cfg.Caches == 1 {
		cfg.SnapshotPath = filepath.Join(s.cfg.Dir, "snapshot.json")
	}
	c, err := federation.NewCache(cfg)
	if err != nil {
		_ = cli.Close()
		return nil, err
	}
	s.regWG.Go(func() { _ = c.Run(ctx); _ = cli.Close() })
	select {
	case <-c.Synced():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	want := s.cfg.Clusters * s.cfg.ExportsPerCluster * s.cfg.EndpointsPerExport
	if got := countEndpoints(c.Snapshot(), s.cfg); got != want {
		return nil, fmt.Errorf("scale: cache %d synced with %d endpoints, want %d (sources %+v, %d services, %d clusters, %d rejected)",
			i, got, want, c.Sources(), len(c.Snapshot().Services()), len(c.Snapshot().Clusters()), len(c.Snapshot().RejectedEndpoints()))
	}
	s.probes.mu.Lock()
	s.caches = append(s.caches, c)
	idx := len(s.caches) - 1
	s.probes.mu.Unlock()
	s.regWG.Go(func() { s.observe(ctx, idx, c) })
	return c, nil
}

func countEndpoints(snap *federation.Snapshot, cfg Config) int {
	n := 0
	for c := range cfg.Clusters {
		for e := range cfg.ExportsPerCluster {
			n += len(snap.Endpoints(clusterName(c), federation.ServiceKey{Namespace: "shop", Name: serviceName(e)}))
		}
	}
	return n
}

// writeHeapProfile writes the live heap, after a collection, to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("scale: heap profile: %w", err)
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("scale: heap profile: %w", err)
	}
	return f.Close()
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func waitFile(ctx context.Context, path string) (os.FileInfo, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if fi, err := os.Stat(path); err == nil {
			return fi, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("scale: %s not written", path)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := string(b)
	if len(f) > 14 {
		f = f[:14]
	}
	return f
}

// selfSignedCA is the one CA certificate every simulated bundle holds.
func selfSignedCA() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("scale: CA key: %w", err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "strait scale CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("scale: CA certificate: %w", err)
	}
	return der, nil
}
