package proxy

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// TestServerIdentityVerified: the outbound side accepts only the SPIFFE ID
// a local endpoint registered, and through a gateway only servers in the
// trust domain of a cluster that exports the service.
func TestServerIdentityVerified(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the base records, given the server's inbound
		// address and the gateway's egress address.
		setup  func(server, gw string) []any
		wantOK bool
	}{
		{"local endpoint with the registered ID", func(server, _ string) []any {
			return []any{gateway(west, "gw1", ""), localEndpoint(server, "spiffe://"+eastTD+"/ns/default/sa/echo")}
		}, false}, // the server is in east: not a local identity
		{"local endpoint registered as another workload", func(server, _ string) []any {
			return []any{gateway(west, "gw1", ""), localEndpoint(server, "spiffe://"+westTD+"/ns/default/sa/other")}
		}, false},
		{"gateway to an exporting cluster", func(_, gw string) []any {
			return []any{gateway(west, "gw1", gw), gateway(east, "gw1", ""), export(east, "spiffe://"+westTD)}
		}, true},
		{"gateway to a cluster that does not export", func(_, gw string) []any {
			return []any{gateway(west, "gw1", gw), gateway(east, "gw1", ""), gateway("north", "gw1", ""), export("north")}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			gw := passthroughGateway(t)
			w.reg.setBase(gateway(east, "gw1", ""), export(east, "spiffe://"+westTD))
			server, _ := w.serverProxy(east, "echo-east")
			gw.forwardTo(server.InboundAddr().String())
			w.reg.setBase(toMessages(tt.setup(server.InboundAddr().String(), gw.Addr()))...)
			client := w.clientProxy(west, "client", "")

			conn, cand, err := client.connect(context.Background(), client.cfg.Upstreams[0], client.log)
			if tt.wantOK {
				if err != nil {
					t.Fatalf("connect() = %v", err)
				}
				cand.release()
				_ = conn.Close()
				return
			}
			if err == nil {
				t.Fatal("connect() accepted a server with the wrong identity")
			}
			var re *RouteError
			if errors.As(err, &re) {
				t.Errorf("connect() = %v, want a verification error, not a refusal", err)
			}
		})
	}
}

func localEndpoint(addr, id string) *straitv1.Endpoint {
	return &straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "fake", Address: addr, SpiffeId: id, Ready: true}
}

func TestMatchMemberOfAny(t *testing.T) {
	m := matchMemberOfAny([]spiffeid.TrustDomain{spiffeid.RequireTrustDomainFromString("a"), spiffeid.RequireTrustDomainFromString("b")})
	if err := m(spiffeid.RequireFromString("spiffe://b/x")); err != nil {
		t.Errorf("b rejected: %v", err)
	}
	if err := m(spiffeid.RequireFromString("spiffe://c/x")); !errors.Is(err, ErrUnexpectedServer) {
		t.Errorf("c: %v, want ErrUnexpectedServer", err)
	}
}

// TestPowerOfTwoChoices: with two local endpoints, the less loaded one is
// always tried first.
func TestPowerOfTwoChoices(t *testing.T) {
	p := &Proxy{cfg: Config{Cluster: west}}
	p.load.init()
	eps := []any{gateway(west, "gw1", ""),
		&straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "a", Address: "10.0.0.1:1", Ready: true},
		&straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "b", Address: "10.0.0.2:1", Ready: true},
		&straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "c", Address: "10.0.0.3:1", Ready: false},
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
		&straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "a", Address: "10.0.0.1:1", Ready: true},
		&straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "b", Address: "10.0.0.2:1", Ready: false},
		&straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "c", Address: "10.0.0.3:1", Ready: false},
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
