package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// Propagation is the spread of write-to-visible times over every (write,
// watcher) pair.
type Propagation struct {
	P50, P99 time.Duration
	Samples  int
}

func summarize(samples []time.Duration) Propagation {
	slices.Sort(samples)
	return Propagation{P50: percentile(samples, 0.5), P99: percentile(samples, 0.99), Samples: len(samples)}
}

// dialEtcd returns n etcd clients of endpoint, one per watcher, as separate
// gateways would have.
func dialEtcd(endpoint string, n int) ([]*clientv3.Client, func(), error) {
	var clis []*clientv3.Client
	closeAll := func() {
		for _, c := range clis {
			_ = c.Close()
		}
	}
	for range n {
		c, err := federation.Dial(federation.ClientConfig{Endpoints: []string{endpoint}})
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("bench: etcd: %w", err)
		}
		clis = append(clis, c)
	}
	return clis, closeAll, nil
}

type seen struct {
	value uint32
	at    time.Time
}

// ExportPropagation writes an export writes times and measures, for each
// write, when each of watchers federation caches (each with its own etcd
// client, as gateways have) publishes a snapshot that shows it. The clock
// starts before the write call.
func ExportPropagation(ctx context.Context, endpoint, prefix string, watchers, writes int) (Propagation, error) {
	clis, closeAll, err := dialEtcd(endpoint, watchers+1)
	if err != nil {
		return Propagation{}, err
	}
	defer closeAll()
	ks := federation.Keyspace{Prefix: prefix}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	seenc := make(chan seen, watchers*4)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	key := federation.ServiceKey{Namespace: "default", Name: "churn"}
	for i := range watchers {
		c, err := federation.NewCache(federation.CacheConfig{Sources: []federation.Source{{Client: clis[i+1]}}, Keyspace: ks})
		if err != nil {
			return Propagation{}, fmt.Errorf("bench: propagation: %w", err)
		}
		wg.Add(2)
		go func() { defer wg.Done(); _ = c.Run(ctx) }()
		go func() {
			defer wg.Done()
			var last uint32
			for {
				ch := c.Changed()
				if p := c.Snapshot().Export(westCluster, key).GetPorts(); len(p) > 0 && p[0].GetPort() != last {
					last = p[0].GetPort()
					select {
					case seenc <- seen{value: last, at: time.Now()}:
					case <-ctx.Done():
						return
					}
				}
				select {
				case <-ch:
				case <-ctx.Done():
					return
				}
			}
		}()
		select {
		case <-c.Synced():
		case <-time.After(readyTimeout):
			return Propagation{}, errors.New("bench: propagation: cache did not sync")
		}
	}
	store := federation.NewStore(clis[0], ks)
	write := func(v uint32) error {
		_, err := store.PutExport(ctx, &straitv1.Export{Cluster: westCluster, Namespace: "default", Service: "churn",
			Ports: []*straitv1.ServicePort{{Name: "tcp", Port: v, Protocol: straitv1.Protocol_PROTOCOL_TCP}}})
		return err
	}
	return measureWrites(ctx, watchers, writes, write, seenc)
}

// EtcdWatch measures the same as ExportPropagation with bare etcd watches
// on one key: from the start of a Put to the event at each watcher.
func EtcdWatch(ctx context.Context, endpoint, key string, watchers, writes int) (Propagation, error) {
	clis, closeAll, err := dialEtcd(endpoint, watchers+1)
	if err != nil {
		return Propagation{}, err
	}
	defer closeAll()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	seenc := make(chan seen, watchers*4)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range watchers {
		wch := clis[i+1].Watch(clientv3.WithRequireLeader(ctx), key)
		// Wait until the watch is registered: a progress request is
		// answered on the watch channel once it is.
		if err := clis[i+1].RequestProgress(ctx); err != nil {
			return Propagation{}, fmt.Errorf("bench: etcd watch: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for resp := range wch {
				at := time.Now()
				for _, ev := range resp.Events {
					v, err := strconv.ParseUint(string(ev.Kv.Value), 10, 32)
					if err != nil {
						continue
					}
					select {
					case seenc <- seen{value: uint32(v), at: at}:
					case <-ctx.Done():
						return
					}
				}
			}
		}()
	}
	// Let every watch reach the server before the first write.
	time.Sleep(200 * time.Millisecond)
	write := func(v uint32) error {
		_, err := clis[0].Put(ctx, key, strconv.FormatUint(uint64(v), 10))
		return err
	}
	return measureWrites(ctx, watchers, writes, write, seenc)
}

// writeTimeout bounds how long one write may take to reach every watcher.
const writeTimeout = 10 * time.Second

func measureWrites(ctx context.Context, watchers, writes int, write func(uint32) error, seenc <-chan seen) (Propagation, error) {
	var samples []time.Duration
	for i := range writes {
		v := uint32(1000 + i)
		start := time.Now()
		if err := write(v); err != nil {
			return Propagation{}, fmt.Errorf("bench: propagation write: %w", err)
		}
		deadline := time.After(writeTimeout)
		for n := 0; n < watchers; {
			select {
			case s := <-seenc:
				if s.value == v {
					samples = append(samples, s.at.Sub(start))
					n++
				}
			case <-deadline:
				return Propagation{}, fmt.Errorf("bench: propagation: write %d seen by %d of %d watchers", i, n, watchers)
			case <-ctx.Done():
				return Propagation{}, ctx.Err()
			}
		}
		// Space the writes so that each is measured alone.
		time.Sleep(10 * time.Millisecond)
	}
	return summarize(samples), nil
}
