package proxy

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// TestServerIdentityVerified: the outbound side dials a local endpoint only
// when its record names a server the service's servers policy admits (the
// proxy's own trust domain, the service's namespace, the export's service
// accounts) and accepts exactly that identity; through a gateway it accepts
// only the servers an export of the service allows. A refused destination
// never sees a byte of the application's.
func TestServerIdentityVerified(t *testing.T) {
	const (
		ok      = "ok"
		refused = "refused" // dialed; the handshake stops at the server's certificate
		skipped = "skipped" // never dialed: the proxy left it out
		// rejected: never dialed, the snapshot left it out.
		rejected = "rejected"
	)
	tests := []struct {
		name string
		// server is the SVID the destination presents: cluster (CA) and
		// service account.
		serverCluster, serverSA string
		// pin is the client's pinned cluster (east: gateway only).
		pin string
		// records returns the records, given the destination's inbound
		// address and the gateway's egress address.
		records func(server, gw string) []any
		want    string
	}{
		{"local endpoint that names its server", west, "echo", "", func(server, _ string) []any {
			return []any{gateway(west, "gw1", ""), localEndpoint(server, "spiffe://"+westTD+"/ns/default/sa/echo")}
		}, ok},
		{"local endpoint whose server is another workload than it names", west, "other", "", func(server, _ string) []any {
			return []any{gateway(west, "gw1", ""), localEndpoint(server, "spiffe://"+westTD+"/ns/default/sa/echo")}
		}, refused},
		{"local endpoint whose server is the caller itself", west, "client", "", func(server, _ string) []any {
			return []any{gateway(west, "gw1", ""), withServers(export(west), "echo"), localEndpoint(server, "spiffe://"+westTD+"/ns/default/sa/echo")}
		}, refused},
		{"local endpoint of a service account the export does not list", west, "other", "", func(server, _ string) []any {
			return []any{gateway(west, "gw1", ""), withServers(export(west), "echo"), localEndpoint(server, "spiffe://"+westTD+"/ns/default/sa/other")}
		}, rejected},
		// Without a gateway record the snapshot does not know west's trust
		// domain; the proxy judges with its own.
		{"local endpoint of another trust domain", east, "echo", "", func(server, _ string) []any {
			return []any{localEndpoint(server, "spiffe://"+eastTD+"/ns/default/sa/echo")}
		}, skipped},
		{"local endpoint without a SPIFFE ID", west, "echo", "", func(server, _ string) []any {
			return []any{gateway(west, "gw1", ""), localEndpoint(server, "")}
		}, rejected},
		{"gateway to a server the export allows", east, "echo", east, func(_, gw string) []any {
			return []any{gateway(west, "gw1", gw), gateway(east, "gw1", ""), withServers(export(east, "spiffe://"+westTD), "echo")}
		}, ok},
		{"gateway to a server of the caller's trust domain", west, "echo", east, func(_, gw string) []any {
			return []any{gateway(west, "gw1", gw), gateway(east, "gw1", ""), export(east, "spiffe://"+westTD)}
		}, refused},
		{"gateway to a service account the export does not list", east, "other", east, func(_, gw string) []any {
			return []any{gateway(west, "gw1", gw), gateway(east, "gw1", ""), withServers(export(east, "spiffe://"+westTD), "echo")}
		}, refused},
		{"gateway to a cluster that does not export", east, "echo", "", func(_, gw string) []any {
			return []any{gateway(west, "gw1", gw), gateway(east, "gw1", ""), gateway("north", "gw1", ""), export("north")}
		}, refused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			gw := passthroughGateway(t)
			app, ln := startEcho(t)
			server := w.run(Config{
				Cluster: tt.serverCluster, Service: "echo", ID: "dest", ServiceAccount: tt.serverSA,
				InboundListenAddr: "127.0.0.1:0", AppAddr: ln.Addr().String(),
				HealthCheck: HealthCheck{Interval: 50 * time.Millisecond},
				SVIDs:       w.svid(tt.serverCluster, tt.serverSA),
				Registry:    newTestRegistry(), // the test writes the records
			})
			gw.forwardTo(server.InboundAddr().String())
			w.reg.setBase(toMessages(tt.records(server.InboundAddr().String(), gw.Addr()))...)
			reg := prometheus.NewRegistry()
			tm, err := trust.NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			client := w.run(Config{
				Cluster: west, ServiceAccount: "client",
				Upstreams:    []Upstream{{Service: echoKey, Port: 9000, Cluster: tt.pin, ListenAddr: "127.0.0.1:0"}},
				SVIDs:        w.svid(west, "client"),
				TrustMetrics: tm,
			})

			got, rtErr := roundTrip(t, client, []byte("ping"))
			_, _, err = client.connect(context.Background(), client.cfg.Upstreams[0], client.log)
			unexpected := testutil.ToFloat64(client.metrics.attempts.WithLabelValues(pathLocal, resultUnexpectedServer)) +
				testutil.ToFloat64(client.metrics.attempts.WithLabelValues(pathGateway, resultUnexpectedServer))
			failures := handshakeFailures(t, reg, trust.ReasonUnexpectedServer)
			switch tt.want {
			case ok:
				if rtErr != nil || string(got) != "ping" {
					t.Fatalf("round trip = %q, %v; want ping", got, rtErr)
				}
				if err != nil {
					t.Fatalf("connect() = %v", err)
				}
				if unexpected != 0 || failures != 0 {
					t.Errorf("%v attempts and %v handshakes counted as unexpected_server, want 0", unexpected, failures)
				}
				return
			case refused:
				var use *trust.UnexpectedServerError
				if !errors.As(err, &use) || !errors.Is(err, ErrUnexpectedServer) {
					t.Fatalf("connect() = %v, want a *trust.UnexpectedServerError wrapping ErrUnexpectedServer", err)
				}
				if failures != 2 {
					t.Errorf("strait_trust_handshake_failures_total{reason=unexpected_server} = %v, want 2", failures)
				}
			case skipped, rejected:
				if !errors.Is(err, ErrNoCandidate) {
					t.Fatalf("connect() = %v, want ErrNoCandidate", err)
				}
				if failures != 0 {
					t.Errorf("%v handshakes refused, want none: the endpoint must not be dialed", failures)
				}
				if n := testutil.ToFloat64(server.metrics.connections.WithLabelValues(dirInbound, resultHandshake)); n != 0 {
					t.Errorf("the destination saw %v connections, want 0", n)
				}
			}
			wantUnexpected, wantRejected := 2.0, 0
			if tt.want == rejected {
				wantUnexpected, wantRejected = 0, 1
			}
			if unexpected != wantUnexpected {
				t.Errorf("attempts counted as unexpected_server = %v, want %v", unexpected, wantUnexpected)
			}
			if n := len(w.reg.src.Snapshot().RejectedEndpoints()); n != wantRejected {
				t.Errorf("the snapshot rejected %d endpoints, want %d", n, wantRejected)
			}
			if len(got) != 0 {
				t.Errorf("round trip returned %q through a refused destination", got)
			}
			if ids := app.SPIFFEIDs(); len(ids) != 0 {
				t.Errorf("the destination's app served %v", ids)
			}
			if n := testutil.ToFloat64(server.metrics.bytes.WithLabelValues(dirInbound)); n != 0 {
				t.Errorf("the destination relayed %v bytes, want 0", n)
			}
		})
	}
}

// withServers sets an export's servers.
func withServers(e *straitv1.Export, servers ...string) *straitv1.Export {
	e.Servers = servers
	return e
}

// handshakeFailures reads strait_trust_handshake_failures_total{reason}
// from reg.
func handshakeFailures(t testing.TB, reg *prometheus.Registry, reason trust.HandshakeFailureReason) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "strait_trust_handshake_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == string(reason) {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func localEndpoint(addr, id string) *straitv1.Endpoint {
	return &straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "fake", Address: addr, SpiffeId: id, Ready: true}
}

func TestMatchAnyPolicy(t *testing.T) {
	m := matchAnyPolicy([]federation.ServerPolicy{
		{TrustDomain: spiffeid.RequireTrustDomainFromString("a"), Namespace: "shop"},
		{TrustDomain: spiffeid.RequireTrustDomainFromString("b"), Namespace: "shop", ServiceAccounts: []string{"api"}},
	})
	for id, want := range map[string]bool{
		"spiffe://a/ns/shop/sa/anything": true,
		"spiffe://b/ns/shop/sa/api":      true,
		"spiffe://b/ns/shop/sa/worker":   false,
		"spiffe://a/ns/other/sa/api":     false,
		"spiffe://c/ns/shop/sa/api":      false,
		"spiffe://a/shop/api":            false,
	} {
		err := m(spiffeid.RequireFromString(id))
		if want && err != nil {
			t.Errorf("%s refused: %v", id, err)
		}
		if !want && !errors.Is(err, ErrUnexpectedServer) {
			t.Errorf("%s: %v, want ErrUnexpectedServer", id, err)
		}
	}
	if err := matchAnyPolicy(nil)(spiffeid.RequireFromString("spiffe://a/ns/shop/sa/api")); !errors.Is(err, ErrUnexpectedServer) {
		t.Errorf("no policy: %v, want ErrUnexpectedServer", err)
	}
}

// TestPowerOfTwoChoices: with two local endpoints, the less loaded one is
// always tried first.
func TestPowerOfTwoChoices(t *testing.T) {
	p := &Proxy{cfg: Config{Cluster: west}}
	p.load.init()
	eps := []any{gateway(west, "gw1", ""),
		&straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "a", Address: "10.0.0.1:1", Ready: true, SpiffeId: echoWestID},
		&straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "b", Address: "10.0.0.2:1", Ready: true, SpiffeId: echoWestID},
		&straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "c", Address: "10.0.0.3:1", Ready: false, SpiffeId: echoWestID},
	}
	reg := newTestRegistry()
	reg.setBase(toMessages(eps)...)
	for range 5 {
		p.load.acquire("10.0.0.1:1")
	}
	own := spiffeid.RequireTrustDomainFromString(westTD)
	up := Upstream{Service: echoKey, Port: 9000}
	for range 50 {
		c := p.candidates(reg.src.Snapshot(), up, own)
		if len(c) != 2 || c[0].addr != "10.0.0.2:1" || c[1].addr != "10.0.0.1:1" {
			t.Fatalf("candidates = %+v", c)
		}
		if c[0].sni != (federation.ServiceName{Port: 9000, Service: echoKey, Cluster: west}).String() {
			t.Fatalf("local SNI = %q", c[0].sni)
		}
	}
}

// echoWestID is the SPIFFE ID of echo's servers in west.
const echoWestID = "spiffe://" + westTD + "/ns/default/sa/echo"

func toMessages(in []any) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m.(proto.Message)
	}
	return out
}

func TestLoadTrackerForgets(t *testing.T) {
	var l loadTracker
	l.init()
	r1, r2 := l.acquire("a"), l.acquire("a")
	if l.outstanding("a") != 2 {
		t.Fatalf("outstanding = %d", l.outstanding("a"))
	}
	r1()
	r2()
	if l.outstanding("a") != 0 || l.size() != 0 {
		t.Errorf("after release: outstanding %d, %d addresses tracked", l.outstanding("a"), l.size())
	}
}

// TestMinHealthySpill: with fewer ready local endpoints than the failover
// policy's min_healthy_percent, the gateway comes first and the remaining
// local endpoints last; without the policy local endpoints come first.
func TestMinHealthySpill(t *testing.T) {
	p := &Proxy{cfg: Config{Cluster: west}}
	p.load.init()
	base := []proto.Message{gateway(west, "gw1", "10.0.9.1:15444"),
		&straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "a", Address: "10.0.0.1:1", Ready: true, SpiffeId: echoWestID},
		&straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "b", Address: "10.0.0.2:1", Ready: false, SpiffeId: echoWestID},
		&straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "c", Address: "10.0.0.3:1", Ready: false, SpiffeId: echoWestID},
	}
	own := spiffeid.RequireTrustDomainFromString(westTD)
	up := Upstream{Service: echoKey, Port: 9000}
	tests := []struct {
		name   string
		policy *straitv1.GatewayConfig
		want   []string
	}{
		{"no policy", nil, []string{"10.0.0.1:1", "10.0.9.1:15444"}},
		{"1 of 3 ready, min 50%", &straitv1.GatewayConfig{Failover: &straitv1.FailoverPolicy{MinHealthyPercent: 50}}, []string{"10.0.9.1:15444", "10.0.0.1:1"}},
		{"1 of 3 ready, min 30%", &straitv1.GatewayConfig{Failover: &straitv1.FailoverPolicy{MinHealthyPercent: 30}}, []string{"10.0.0.1:1", "10.0.9.1:15444"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := newTestRegistry()
			msgs := slices.Clone(base)
			if tc.policy != nil {
				msgs = append(msgs, tc.policy)
			}
			reg.setBase(msgs...)
			var got []string
			for _, c := range p.candidates(reg.src.Snapshot(), up, own) {
				got = append(got, c.addr)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("candidates = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestServingNeedsNamespaceSVID: a serving proxy whose SVID is not a
// workload of its namespace does not start (callers would refuse it, and
// its Endpoint record would be invalid).
func TestServingNeedsNamespaceSVID(t *testing.T) {
	w := newWorld(t)
	_, ln := startEcho(t)
	p, err := New(Config{
		Cluster: west, Namespace: "shop", Service: "echo", ID: "e",
		InboundListenAddr: "127.0.0.1:0", AppAddr: ln.Addr().String(),
		SVIDs:   w.svid(west, "echo"), // spiffe://west.strait.local/ns/default/sa/echo
		Bundles: w.bundles, Snapshots: w.reg.src, Registry: w.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = p.Run(ctx)
	if !errors.Is(err, federation.ErrServerNotAllowed) || !strings.Contains(err.Error(), "namespace default is not the service's shop") {
		t.Fatalf("Run() = %v, want a refusal of the SVID's namespace", err)
	}
	if n := len(w.reg.records); n != 0 {
		t.Errorf("%d records registered", n)
	}
}
