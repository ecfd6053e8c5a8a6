package federation

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// BenchmarkCacheHeap is the heap a cache holds for 100,000 exports of
// 1,000 clusters with 3 endpoints each, as a list delivers them: the keys
// and values decoded from etcd's responses, then published. It reports the
// live heap after a collection (the values etcd sent are dropped first)
// in bytes per export with its endpoints. Run it with -memprofile and
// `go tool pprof -sample_index=inuse_space` for where the bytes are.
func BenchmarkCacheHeap(b *testing.B) {
	for _, exports := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("exports=%d", exports), func(b *testing.B) {
			var held uint64
			for b.Loop() {
				b.StopTimer()
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				b.StartTimer()
				c := heapCache(b, exports)
				b.StopTimer()
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				held = after.HeapAlloc - before.HeapAlloc
				heapKept = c
				b.StartTimer()
			}
			b.ReportMetric(float64(held)/float64(exports), "heap-bytes/export")
			b.ReportMetric(float64(held)/(1<<20), "heap-MiB")
		})
	}
}

// heapKept keeps the last cache of BenchmarkCacheHeap alive until the
// memory profile is written.
var heapKept *Cache

// heapCache lists a federation of exports/100 clusters into a cache (never
// run) and publishes it: each cluster has two gateways and 100 exports of
// the same 100 services, each with 3 endpoints, shaped as e2e/scale's
// simulated clusters write them.
func heapCache(b *testing.B, exports int) *Cache {
	b.Helper()
	ks := Keyspace{}
	c, err := NewCache(CacheConfig{Sources: []Source{{Name: "x", Client: &clientv3.Client{}}}})
	if err != nil {
		b.Fatal(err)
	}
	s := c.sources[0]
	var kvs []*mvccpb.KeyValue
	put := func(key string, m proto.Message) {
		// Each value in its own buffer, as a decoded Range response
		// holds them.
		kvs = append(kvs, &mvccpb.KeyValue{Key: []byte(key), Value: encode(b, m),
			CreateRevision: int64(len(kvs) + 1), ModRevision: int64(len(kvs) + 1), Lease: 0x7000 + int64(len(kvs))})
	}
	for cl := range exports / 100 {
		cluster := fmt.Sprintf("cluster-%04d", cl)
		for g := range 2 {
			put(ks.Gateway(cluster, fmt.Sprintf("gw-%d", g)), testGateway(cluster, fmt.Sprintf("gw-%d", g)))
		}
		for e := range 100 {
			svc := fmt.Sprintf("svc-%04d", e)
			put(ks.Export(cluster, "shop", svc), testExport(cluster, "shop", svc, time.Unix(int64(cl), 0)))
			for i := range 3 {
				id := fmt.Sprintf("ep-%d", i)
				ep := testEndpointAddr(cluster, "shop", svc, id, fmt.Sprintf("10.%d.%d.%d:15006", e%250, i%250, 1+cl%250))
				put(ks.Endpoint(cluster, "shop", svc, id), ep)
			}
		}
	}
	c.applyList(s, kvs, int64(len(kvs)))
	c.publish()
	return c
}
