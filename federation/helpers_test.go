package federation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// waitTimeout bounds every wait for state in these tests.
const waitTimeout = 20 * time.Second

// testLogger logs to stderr only with -v, at debug level.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return nil
}

// startCache runs a cache over one client until the test ends and waits
// for its first sync.
func startCache(t testing.TB, cfg CacheConfig) *Cache {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := NewCache(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-c.Synced():
	case <-time.After(waitTimeout):
		t.Fatal("cache did not sync")
	}
	return c
}

func oneSource(cli *clientv3.Client) []Source { return []Source{{Name: "local", Client: cli}} }

// waitFor waits on src.Changed until cond holds for the snapshot.
func waitFor(t testing.TB, src SnapshotSource, what string, cond func(*Snapshot) bool) *Snapshot {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		ch := src.Changed()
		s := src.Snapshot()
		if cond(s) {
			return s
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s (revision %d)", what, s.Revision())
		}
	}
}

// poll checks cond until it holds or the deadline passes.
func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tcpPort(name string, port uint32) *straitv1.ServicePort {
	return &straitv1.ServicePort{Name: name, Port: port, Protocol: straitv1.Protocol_PROTOCOL_TCP}
}

func testExport(cluster, ns, svc string, created time.Time, ports ...*straitv1.ServicePort) *straitv1.Export {
	if len(ports) == 0 {
		ports = []*straitv1.ServicePort{tcpPort("http", 8080)}
	}
	return &straitv1.Export{Cluster: cluster, Namespace: ns, Service: svc, Ports: ports,
		CreatedAt: timestamppb.New(created)}
}

func testGateway(cluster, id string) *straitv1.Gateway {
	return &straitv1.Gateway{Cluster: cluster, Id: id, TrustDomain: cluster + ".example",
		SpiffeId: "spiffe://" + cluster + ".example/strait/gateway/" + cluster,
		Address:  "10.0.0.1:4443", EgressAddress: "10.0.0.1:15001", Region: "eu-west", Zone: "a",
		StartedAt: timestamppb.Now()}
}

// counterValue reads a counter (with labels) from a registry.
func counterValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				total += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				total += m.GetGauge().GetValue()
			}
		}
	}
	return total
}

// testCA returns a DER self-signed CA certificate.
func testCA(t testing.TB, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func testEndpoint(cluster, ns, svc, id string) *straitv1.Endpoint {
	return testEndpointAddr(cluster, ns, svc, id, "10.2.0.7:15006")
}

func testEndpointAddr(cluster, ns, svc, id, addr string) *straitv1.Endpoint {
	return &straitv1.Endpoint{Cluster: cluster, Namespace: ns, Service: svc, Id: id, Address: addr,
		Ports: []*straitv1.ServicePort{tcpPort("http", 8080)}, Ready: true,
		SpiffeId: "spiffe://" + cluster + ".example/ns/" + ns + "/sa/" + svc}
}

// dialTest returns a client made by Dial (capped reconnect backoff, quick
// keepalives), closed when the test ends.
func dialTest(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := Dial(ClientConfig{Endpoints: endpoints, KeepAlive: time.Second, ReconnectMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}
