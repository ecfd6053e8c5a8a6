package gateway

import (
	"time"

	"net"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// deadUDPAddr returns a loopback UDP address nobody listens on.
func deadUDPAddr(t *testing.T) string {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}

// deadTCPAddr returns a loopback TCP address nobody listens on.
func deadTCPAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestFailover: an attempt that fails before the destination sent a byte
// is retried on the next candidate with the buffered ClientHello.
func TestFailover(t *testing.T) {
	tests := []struct {
		name string
		// setupB breaks cluster b, whose export is the oldest.
		setupB func(t *testing.T, w *world)
	}{
		{"b has no ready endpoint", func(t *testing.T, w *world) {
			w.start(w.config("b", "b1", "r1"))
		}},
		{"b's endpoint refuses connections", func(t *testing.T, w *world) {
			w.endpoint("b", "echo", "dead", deadTCPAddr(t))
			w.start(w.config("b", "b1", "r1"))
		}},
		{"b's gateway is unreachable", func(t *testing.T, w *world) {
			w.endpoint("b", "echo", "e1", echoServer(t))
			w.reg.add(&straitv1.Gateway{Cluster: "b", Id: "b1", TrustDomain: "b.test", SpiffeId: "spiffe://b.test/strait/gateway/b", Address: deadUDPAddr(t), Region: "r1"})
		}},
		{"b's gateway record claims another identity", func(t *testing.T, w *world) {
			w.endpoint("b", "echo", "e1", echoServer(t))
			b := w.start(w.config("b", "b1", "r1"))
			w.reg.add(&straitv1.Gateway{Cluster: "b", Id: "b2", TrustDomain: "b.test", SpiffeId: "spiffe://c.test/strait/gateway/c", Address: b.IngressAddr().String(), Region: "r1"})
			// b1 itself serves: remove it so that only the bad record is left.
			w.reg.Delete(w.config("b", "b1", "").Keyspace.Gateway("b", "b1"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, "a", "b", "c")
			w.reg.add(
				&straitv1.Export{Cluster: "b", Namespace: "default", Service: "echo", Consumers: []string{"spiffe://a.test"},
					Ports: []*straitv1.ServicePort{{Name: "tcp", Port: 9000}}, CreatedAt: timestamppb.New(timestamppb.Now().AsTime().Add(-2e9))},
				&straitv1.Export{Cluster: "c", Namespace: "default", Service: "echo", Consumers: []string{"spiffe://a.test"},
					Ports: []*straitv1.ServicePort{{Name: "tcp", Port: 9000}}, CreatedAt: timestamppb.Now()},
			)
			w.endpoint("c", "echo", "e1", echoServer(t))
			tt.setupB(t, w)
			c := w.start(w.config("c", "c1", "r1"))
			a := w.start(w.config("a", "a1", "r1"))
			hello := clientHello(t, "9000.echo.default.any.strait")
			const n = 5
			for i := range n {
				if err := finishStreamCtx(a, hello, payloadFor(i)); err != nil {
					t.Fatal(err)
				}
			}
			if got := acceptedIngress(c, "a"); got != n {
				t.Fatalf("c accepted %v streams, want %d", got, n)
			}
		})
	}
}

// TestLocality: of two clusters exporting a service, the one in the
// caller's region is preferred even when its export is younger.
func TestLocality(t *testing.T) {
	w := newWorld(t, "a", "b", "c")
	w.export("b", "echo", 9000, "spiffe://a.test") // oldest, other region
	w.reg.add(echoExport("c", time.Now(), nil))
	w.endpoint("b", "echo", "e1", echoServer(t))
	w.endpoint("c", "echo", "e1", echoServer(t))
	b := w.start(w.config("b", "b1", "far"))
	c := w.start(w.config("c", "c1", "near"))
	a := w.start(w.config("a", "a1", "near"))
	hello := clientHello(t, "9000.echo.default.any.strait")
	for i := range 3 {
		if err := finishStreamCtx(a, hello, payloadFor(i)); err != nil {
			t.Fatal(err)
		}
	}
	if acceptedIngress(c, "a") != 3 || acceptedIngress(b, "a") != 0 {
		t.Fatalf("near c accepted %v, far b %v; want 3 and 0", acceptedIngress(c, "a"), acceptedIngress(b, "a"))
	}
	// Pinned to the far cluster, it is used.
	if err := finishStreamCtx(a, clientHello(t, "9000.echo.default.b.strait"), payloadFor(9)); err != nil {
		t.Fatal(err)
	}
	if acceptedIngress(b, "a") != 1 {
		t.Fatalf("pinned: b accepted %v, want 1", acceptedIngress(b, "a"))
	}
}

// TestRegionOrder: the failover policy's region order ranks the clusters of
// other regions (the live global configuration, overridden per export).
func TestRegionOrder(t *testing.T) {
	w := newWorld(t, "a", "b", "c")
	w.export("b", "echo", 9000, "spiffe://a.test") // oldest, region r1
	w.reg.add(echoExport("c", time.Now(), nil))
	w.endpoint("b", "echo", "e1", echoServer(t))
	w.endpoint("c", "echo", "e1", echoServer(t))
	b := w.start(w.config("b", "b1", "r1"))
	c := w.start(w.config("c", "c1", "r2"))
	a := w.start(w.config("a", "a1", "home"))
	hello := clientHello(t, "9000.echo.default.any.strait")
	send := func(i int) {
		t.Helper()
		if err := finishStreamCtx(a, hello, payloadFor(i)); err != nil {
			t.Fatal(err)
		}
	}
	// No order: the oldest export (b) serves.
	send(0)
	if acceptedIngress(b, "a") != 1 || acceptedIngress(c, "a") != 0 {
		t.Fatalf("no order: b accepted %v, c %v; want 1 and 0", acceptedIngress(b, "a"), acceptedIngress(c, "a"))
	}
	// The global order prefers r2 (c).
	w.reg.add(&straitv1.GatewayConfig{Failover: &straitv1.FailoverPolicy{RegionOrder: []string{"r2", "r1"}}})
	send(1)
	if acceptedIngress(c, "a") != 1 {
		t.Fatalf("order [r2 r1]: c accepted %v, want 1", acceptedIngress(c, "a"))
	}
	// b's export overrides it with its own order, preferring r1 again.
	w.reg.add(echoExport("b", time.Unix(1, 0), &straitv1.FailoverPolicy{RegionOrder: []string{"r1"}}))
	send(2)
	if acceptedIngress(b, "a") != 2 {
		t.Fatalf("export order [r1]: b accepted %v, want 2", acceptedIngress(b, "a"))
	}
}

// TestMinHealthyPercent: a cluster with fewer ready endpoints than the
// policy's minimum spills its traffic to the next cluster, even when it is
// preferred otherwise; without the policy it keeps serving.
func TestMinHealthyPercent(t *testing.T) {
	w := newWorld(t, "a", "b", "c")
	w.export("b", "echo", 9000, "spiffe://a.test") // oldest
	w.reg.add(echoExport("c", time.Now(), nil))
	w.endpoint("b", "echo", "e1", echoServer(t))
	for _, id := range []string{"e2", "e3", "e4"} { // 1 of 4 ready in b
		w.reg.add(&straitv1.Endpoint{Cluster: "b", Namespace: "default", Service: "echo", Id: id, Address: "127.0.0.1:9", Ready: false,
			SpiffeId: "spiffe://b.test/ns/default/sa/echo"})
	}
	w.endpoint("c", "echo", "e1", echoServer(t))
	b := w.start(w.config("b", "b1", "r"))
	c := w.start(w.config("c", "c1", "r"))
	a := w.start(w.config("a", "a1", "r"))
	hello := clientHello(t, "9000.echo.default.any.strait")
	if err := finishStreamCtx(a, hello, payloadFor(0)); err != nil {
		t.Fatal(err)
	}
	if acceptedIngress(b, "a") != 1 {
		t.Fatalf("no policy: b accepted %v, want 1", acceptedIngress(b, "a"))
	}
	w.reg.add(&straitv1.GatewayConfig{Failover: &straitv1.FailoverPolicy{MinHealthyPercent: 50}})
	if err := finishStreamCtx(a, hello, payloadFor(1)); err != nil {
		t.Fatal(err)
	}
	if acceptedIngress(c, "a") != 1 || acceptedIngress(b, "a") != 1 {
		t.Fatalf("min 50%%: b accepted %v, c %v; want 1 and 1 (b is 25%% healthy)", acceptedIngress(b, "a"), acceptedIngress(c, "a"))
	}
}

// echoExport is cluster's export of echo.default port 9000 to a.test,
// created at created, with an optional failover policy.
func echoExport(cluster string, created time.Time, failover *straitv1.FailoverPolicy) *straitv1.Export {
	return &straitv1.Export{Cluster: cluster, Namespace: "default", Service: "echo", Consumers: []string{"spiffe://a.test"},
		Ports: []*straitv1.ServicePort{{Name: "tcp", Port: 9000}}, CreatedAt: timestamppb.New(created), Failover: failover}
}
