package federation

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/internal/etcdtest"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// BenchmarkExportVisibleLatency measures the time from an export write to
// its visibility in 10 watching caches (10 gateways, each with its own etcd
// client), reported as p50/p99 over every (write, cache) pair.
func BenchmarkExportVisibleLatency(b *testing.B) {
	srv, cli := etcdtest.Start(b, 1)
	ks := Keyspace{}
	store := NewStore(cli, ks)
	const caches = 10
	key := ServiceKey{Namespace: "shop", Name: "churn"}
	type seen struct {
		port uint32
		at   time.Time
	}
	seenc := make(chan seen, caches*4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range caches {
		c := startCache(b, CacheConfig{Sources: oneSource(etcdtest.NewClient(b, srv.Endpoints()...))})
		go func() {
			var last uint32
			for {
				ch := c.Changed()
				if p := c.Snapshot().Export("west", key).GetPorts(); len(p) > 0 && p[0].GetPort() != last {
					last = p[0].GetPort()
					seenc <- seen{port: last, at: time.Now()}
				}
				select {
				case <-ch:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	var samples []time.Duration
	b.ResetTimer()
	for i := range b.N {
		port := uint32(1 + i%60000)
		start := time.Now()
		if _, err := store.PutExport(ctx, testExport("west", "shop", "churn", time.Unix(1, 0), tcpPort("http", port))); err != nil {
			b.Fatal(err)
		}
		for n := 0; n < caches; {
			s := <-seenc
			if s.port == port {
				samples = append(samples, s.at.Sub(start))
				n++
			}
		}
	}
	b.StopTimer()
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(samples[len(samples)*99/100].Microseconds())/1000, "p99-ms")
}

// seedFederation writes exports and gateways spread over clusters.
func seedFederation(b *testing.B, cli *clientv3.Client, ks Keyspace, clusters, exportsPerCluster int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	created := time.Unix(1_700_000_000, 0)
	var ops []clientv3.Op
	flush := func() {
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
		ops = ops[:0]
	}
	for c := range clusters {
		cluster := fmt.Sprintf("cluster-%03d", c)
		ops = append(ops, clientv3.OpPut(ks.Gateway(cluster, "gw-0"), string(encode(b, testGateway(cluster, "gw-0")))))
		for e := range exportsPerCluster {
			svc := fmt.Sprintf("svc-%04d", e)
			exp := testExport(cluster, "shop", svc, created.Add(time.Duration(c)*time.Second),
				tcpPort("http", 8080), tcpPort("grpc", 9090))
			exp.Consumers = []string{"spiffe://" + cluster + ".example"}
			ops = append(ops, clientv3.OpPut(ks.Export(cluster, "shop", svc), string(encode(b, exp))))
			if len(ops) >= maxTxnOps {
				flush()
			}
		}
	}
	if len(ops) > 0 {
		flush()
	}
}

// BenchmarkInitialSync lists 10,000 exports across 100 clusters into a new
// cache and reports the time to Synced and the heap the cache holds.
func BenchmarkInitialSync(b *testing.B) {
	_, cli := etcdtest.Start(b, 1)
	ks := Keyspace{}
	seedFederation(b, cli, ks, 100, 100)
	var total time.Duration
	var heap uint64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		c, err := NewCache(CacheConfig{Sources: oneSource(cli)})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { done <- c.Run(ctx) }()
		<-c.Synced()
		// Synced closes as the first full snapshot is published.
		total += time.Since(start)
		b.StopTimer()
		if n := len(c.Snapshot().Services()); n != 100 {
			b.Fatalf("services = %d, want 100", n)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if after.HeapAlloc > before.HeapAlloc {
			heap += after.HeapAlloc - before.HeapAlloc
		}
		runtime.KeepAlive(c)
		cancel()
		<-done
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "sync-ms")
	b.ReportMetric(float64(heap)/float64(b.N), "heap-bytes")
}

// BenchmarkSnapshotRead is the data path's cost of reading the cache: take
// the current snapshot and resolve a global service, from parallel readers.
func BenchmarkSnapshotRead(b *testing.B) {
	records := make([]Record, 0, 10_100)
	ks := Keyspace{}
	for c := range 100 {
		cluster := fmt.Sprintf("cluster-%03d", c)
		records = append(records, Record{Key: ks.Gateway(cluster, "gw-0"), Message: testGateway(cluster, "gw-0")})
		for e := range 100 {
			svc := fmt.Sprintf("svc-%04d", e)
			records = append(records, Record{Key: ks.Export(cluster, "shop", svc),
				Message: testExport(cluster, "shop", svc, time.Unix(int64(c), 0))})
		}
	}
	c, err := NewCache(CacheConfig{Sources: []Source{{Name: "x", Client: &clientv3.Client{}}}})
	if err != nil {
		b.Fatal(err)
	}
	snap := NewSnapshot(1, records)
	c.state.Store(&published{snap: snap, changed: make(chan struct{})})
	key := ServiceKey{Namespace: "shop", Name: "svc-0042"}
	b.Run("Snapshot", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if c.Snapshot() == nil {
					b.Fatal("nil snapshot")
				}
			}
		})
	})
	b.Run("Service", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if svc, ok := c.Snapshot().Service(key); !ok || len(svc.Clusters) != 100 {
					b.Fatal("service not resolved")
				}
			}
		})
	})
	b.Run("ExportLookup", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if c.Snapshot().Export("cluster-050", key) == nil {
					b.Fatal("export not found")
				}
			}
		})
	})
}

// BenchmarkDecodeRecord is the cost of decoding and validating one export.
func BenchmarkDecodeRecord(b *testing.B) {
	ks := Keyspace{}
	exp := testExport("west", "shop", "payments", time.Unix(1, 0), tcpPort("http", 8080), tcpPort("grpc", 9090))
	exp.Consumers = []string{"spiffe://east.example", "spiffe://north.example/ns/shop/sa/cart"}
	key := ks.Export("west", "shop", "payments")
	value := encode(b, exp)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRecord(ks, key, value); err != nil {
			b.Fatal(err)
		}
	}
}

var _ = straitv1.Protocol_PROTOCOL_TCP

// BenchmarkPublish is the cost of building and publishing a whole snapshot
// of 10,000 exports across 100 clusters from scratch: the first publish
// after a list. Later changes cost only what they touch
// (BenchmarkPublishOneChange).
func BenchmarkPublish(b *testing.B) {
	ks := Keyspace{}
	c, err := NewCache(CacheConfig{Sources: []Source{{Name: "x", Client: &clientv3.Client{}}}})
	if err != nil {
		b.Fatal(err)
	}
	s := c.sources[0]
	for cl := range 100 {
		cluster := fmt.Sprintf("cluster-%03d", cl)
		key := ks.Gateway(cluster, "gw-0")
		s.put(key, newEntry(rec{key: key, msg: testGateway(cluster, "gw-0")}, nil))
		for e := range 100 {
			svc := fmt.Sprintf("svc-%04d", e)
			key := ks.Export(cluster, "shop", svc)
			s.put(key, newEntry(rec{key: key, msg: testExport(cluster, "shop", svc, time.Unix(int64(cl), 0))}, nil))
		}
	}
	s.listed = true
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		c.builder = newSnapshotBuilder(c.cfg.Keyspace)
		for k := range s.entries {
			s.changed[k] = struct{}{}
		}
		b.StartTimer()
		c.publish()
	}
	if n := len(c.Snapshot().Services()); n != 100 {
		b.Fatalf("services = %d, want 100", n)
	}
}

// scaleCache is a cache (never run) whose one source holds a federation of
// exports/100 clusters, each with one gateway and 100 exports of the same
// 100 services (global services), each with 3 endpoints, published once.
func scaleCache(b *testing.B, exports int) (*Cache, *source) {
	b.Helper()
	ks := Keyspace{}
	c, err := NewCache(CacheConfig{Sources: []Source{{Name: "x", Client: &clientv3.Client{}}}})
	if err != nil {
		b.Fatal(err)
	}
	s := c.sources[0]
	var events []*clientv3.Event
	put := func(key string, m proto.Message) {
		events = append(events, &clientv3.Event{Type: clientv3.EventTypePut,
			Kv: &mvccpb.KeyValue{Key: []byte(key), Value: encode(b, m), ModRevision: int64(len(events) + 1)}})
	}
	for cl := range exports / 100 {
		cluster := fmt.Sprintf("cluster-%04d", cl)
		put(ks.Gateway(cluster, "gw-0"), testGateway(cluster, "gw-0"))
		for e := range 100 {
			svc := fmt.Sprintf("svc-%04d", e)
			put(ks.Export(cluster, "shop", svc), testExport(cluster, "shop", svc, time.Unix(int64(cl), 0)))
			for i := range 3 {
				id := fmt.Sprintf("ep-%d", i)
				ep := testEndpoint(cluster, "shop", svc, id)
				ep.SpiffeId = "spiffe://" + cluster + ".example/ns/shop/sa/" + svc
				put(ks.Endpoint(cluster, "shop", svc, id), ep)
			}
		}
	}
	c.apply(s, clientv3.WatchResponse{Events: events})
	s.listed = true
	c.publish()
	return c, s
}

// BenchmarkPublishOneChange is what one endpoint's readiness change costs
// the cache: apply the watch event and publish the next snapshot, at 1,000,
// 10,000 and 100,000 exports with 3 endpoints each. It must not grow with
// the number of exports.
func BenchmarkPublishOneChange(b *testing.B) {
	for _, exports := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("exports=%d", exports), func(b *testing.B) {
			c, s := scaleCache(b, exports)
			ks := Keyspace{}
			clusters := exports / 100
			if got := len(c.Snapshot().Services()); got != 100 {
				b.Fatalf("services = %d, want 100", got)
			}
			var samples []time.Duration
			rev := int64(10_000_000)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				cluster := fmt.Sprintf("cluster-%04d", i%clusters)
				svc := fmt.Sprintf("svc-%04d", (i/clusters)%100)
				ep := testEndpoint(cluster, "shop", svc, "ep-1")
				ep.Ready = i%2 == 1
				rev++
				ev := &clientv3.Event{Type: clientv3.EventTypePut,
					Kv: &mvccpb.KeyValue{Key: []byte(ks.Endpoint(cluster, "shop", svc, "ep-1")), Value: encode(b, ep), ModRevision: rev}}
				start := time.Now()
				c.apply(s, clientv3.WatchResponse{Events: []*clientv3.Event{ev}})
				c.publish()
				samples = append(samples, time.Since(start))
			}
			b.StopTimer()
			if n := len(c.Snapshot().ReadyEndpoints("cluster-0000", ServiceKey{Namespace: "shop", Name: "svc-0000"})); n != 2 && n != 3 {
				b.Fatalf("ready endpoints = %d, want 2 or 3", n)
			}
			slices.Sort(samples)
			b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds())/1e6, "p50-ms")
			b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds())/1e6, "p99-ms")
		})
	}
}

// BenchmarkWriteDisk is the cost of persisting the snapshot file of
// 100,000 exports with 3 endpoints each (400,000 records with the
// gateways): encode, write, fsync and rename.
func BenchmarkWriteDisk(b *testing.B) {
	c, _ := scaleCache(b, 100_000)
	c.cfg.SnapshotPath = filepath.Join(b.TempDir(), "snapshot.json")
	p := c.state.Load()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.writeDisk(p); err != nil {
			b.Fatal(err)
		}
	}
	fi, err := os.Stat(c.cfg.SnapshotPath)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(fi.Size())/(1<<20), "file-MiB")
}
