package federation_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// A gateway registers itself under a lease, watches the federation and
// routes from the newest snapshot.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cli, err := federation.Dial(federation.ClientConfig{Endpoints: []string{federation.DefaultEndpoint}})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ks := federation.Keyspace{}

	// Leased registration: the record exists while the gateway runs.
	reg, err := federation.NewRegistrar(federation.RegistrarConfig{Client: cli, Keyspace: ks})
	if err != nil {
		log.Fatal(err)
	}
	reg.Put(ks.Gateway("west", "gw-0"), &straitv1.Gateway{Cluster: "west", Id: "gw-0", Address: "10.0.0.1:4443"})
	go func() { _ = reg.Run(ctx) }()

	// The watch cache, persisted for static stability.
	cache, err := federation.NewCache(federation.CacheConfig{
		Sources:      []federation.Source{{Name: "local", Client: cli}},
		Keyspace:     ks,
		SnapshotPath: "/var/lib/strait/snapshot.json",
		Logger:       slog.Default(),
		Metrics:      prometheus.NewRegistry(),
	})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = cache.Run(ctx) }()
	<-cache.Synced()

	for {
		changed := cache.Changed() // before Snapshot, so no change is missed
		snap := cache.Snapshot()
		if svc, ok := snap.Service(federation.ServiceKey{Namespace: "shop", Name: "payments"}); ok {
			fmt.Println("payments is served by", svc.Clusters)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// Durable intent goes through a Store: exports keep their creation time
// across edits, and bundles only move forward.
func ExampleStore() {
	cli, err := federation.Dial(federation.ClientConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	store := federation.NewStore(cli, federation.Keyspace{})
	_, err = store.PutExport(ctx, &straitv1.Export{
		Cluster: "west", Namespace: "shop", Service: "payments",
		Ports:     []*straitv1.ServicePort{{Name: "http", Port: 8080, Protocol: straitv1.Protocol_PROTOCOL_TCP}},
		Consumers: []string{"spiffe://east.example"},
	})
	if err != nil {
		log.Fatal(err)
	}
}
