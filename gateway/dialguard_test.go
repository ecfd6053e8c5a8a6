package gateway

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// countingListener is a TCP listener that counts the connections it
// accepts and closes them.
type countingListener struct {
	addr     netip.AddrPort
	accepted atomic.Int64
}

func listenCounting(t testing.TB, network, addr string) *countingListener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &countingListener{addr: ln.Addr().(*net.TCPAddr).AddrPort()}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.accepted.Add(1)
			_ = conn.Close()
		}
	}()
	return c
}

// dnsServer answers A queries for the names of hosts (fully qualified, with
// the trailing dot) on a loopback UDP port, and nothing else. resolver
// returns a Go resolver that asks only it.
type dnsServer struct {
	addr  string
	hosts map[string]netip.Addr
}

func startDNS(t testing.TB, hosts map[string]netip.Addr) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{addr: pc.LocalAddr().String(), hosts: hosts}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = pc.Close()
		<-done
	})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp, err := s.answer(buf[:n]); err == nil {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	}()
	return s
}

func (s *dnsServer) answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	hdr, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	ip, known := s.hosts[strings.ToLower(q.Name.String())]
	rcode := dnsmessage.RCodeSuccess
	if !known {
		rcode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: hdr.ID, Response: true, Authoritative: true, RecursionDesired: hdr.RecursionDesired, RCode: rcode})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if known && q.Type == dnsmessage.TypeA && ip.Is4() {
		rh := dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 0}
		if err := b.AResource(rh, dnsmessage.AResource{A: ip.As4()}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp4", s.addr)
	}}
}

// refusedDials reads strait_gateway_endpoint_dials_refused_total{reason}
// from what the gateway's /metrics serves.
func refusedDials(t testing.TB, g prometheus.Gatherer, reason string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "strait_gateway_endpoint_dials_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestEndpointDialPolicy: endpoint records that point at the gateway host's
// loopback, link-local addresses, its own listeners or its etcd are refused
// with NO_ENDPOINT, counted by reason, and never dialed, including a host
// name that resolves to loopback; loopback is reachable only when the
// configuration opts in, and even then never the gateway's own listeners or
// etcd.
func TestEndpointDialPolicy(t *testing.T) {
	w := newWorld(t, "a", "b")
	loop4 := listenCounting(t, "tcp4", "127.0.0.1:0")
	loop6 := listenCounting(t, "tcp6", "[::1]:0")
	etcd := listenCounting(t, "tcp4", "127.0.0.1:0") // where the gateway's etcd serves
	const name = "loopback.strait.test"
	dns := startDNS(t, map[string]netip.Addr{name + ".": netip.MustParseAddr("127.0.0.1")})

	// Every dial the gateway makes goes through here; nothing but loopback
	// is dialed for real, whatever the code under test decides.
	var dials atomic.Int64
	cfg := w.config("b", "b1", "")
	cfg.EndpointCIDRs = nil // the default policy
	cfg.EtcdEndpoints = []string{"http://" + etcd.addr.String()}
	cfg.Resolver = dns.resolver()
	cfg.DialTimeout = 2 * time.Second
	cfg.DialEndpoint = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || !ap.Addr().Unmap().IsLoopback() {
			return nil, fmt.Errorf("test dialer: not dialing %s off the host", addr)
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	b := w.start(cfg)
	conn := w.dialAs(t, "a", b)
	admin := b.AdminAddr().(*net.TCPAddr).Port
	egress := b.EgressAddr().(*net.TCPAddr).Port
	echo := echoServer(t)
	port := func(p int) string { return strconv.Itoa(p) }

	type row struct {
		name, addr, reason string
		target             *countingListener // must accept nothing; nil: nothing listens there
	}
	defaults := []row{
		{"loopback", loop4.addr.String(), dialRefusedLoopback, loop4},
		{"IPv6 loopback", loop6.addr.String(), dialRefusedLoopback, loop6},
		{"IPv4-mapped loopback", "[::ffff:127.0.0.1]:" + port(int(loop4.addr.Port())), dialRefusedLoopback, loop4},
		{"admin port", "127.0.0.1:" + port(admin), dialRefusedOwnListener, nil},
		{"etcd client port", etcd.addr.String(), dialRefusedEtcd, etcd},
		{"link-local", "169.254.169.254:80", dialRefusedLinkLocal, nil},
		{"unspecified", "0.0.0.0:" + port(int(loop4.addr.Port())), dialRefusedUnspecified, loop4},
		{"name resolving to loopback", name + ":" + port(int(loop4.addr.Port())), dialRefusedLoopback, loop4},
	}
	// With loopback admitted by the live configuration, the gateway's own
	// listeners and etcd stay out of reach.
	optedIn := []row{
		{"admin port, loopback admitted", "127.0.0.1:" + port(admin), dialRefusedOwnListener, nil},
		{"egress port, loopback admitted", "127.0.0.1:" + port(egress), dialRefusedOwnListener, nil},
		{"etcd client port, loopback admitted", etcd.addr.String(), dialRefusedEtcd, etcd},
		{"etcd port on another loopback address", "127.0.0.2:" + port(int(etcd.addr.Port())), dialRefusedEtcd, etcd},
		{"name resolving to the admin port", name + ":" + port(admin), dialRefusedOwnListener, nil},
		{"link-local outside the ranges", "169.254.169.254:80", dialRefusedOutsideRanges, nil},
	}

	n := 0
	check := func(t *testing.T, tt row) {
		n++
		svc := fmt.Sprintf("svc%d", n)
		w.export("b", svc, 9000, "spiffe://a.test")
		endpointWithID(w, svc, tt.addr)
		before, dialsBefore := refusedDials(t, b.gatherer, tt.reason), dials.Load()
		rep := openTunnelStream(t, conn, svc)
		if rep.GetCode() != straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT {
			t.Errorf("%s: reply %v, want NO_ENDPOINT", tt.addr, rep)
		}
		if got := refusedDials(t, b.gatherer, tt.reason) - before; got != 1 {
			t.Errorf("%s: refused dials with reason %q rose by %v, want 1", tt.addr, tt.reason, got)
		}
		if d := dials.Load() - dialsBefore; d != 0 {
			t.Errorf("%s: the gateway dialed %d times", tt.addr, d)
		}
		if tt.target != nil && tt.target.accepted.Load() != 0 {
			t.Errorf("%s: its listener accepted %d connections", tt.addr, tt.target.accepted.Load())
		}
	}
	for _, tt := range defaults {
		t.Run(tt.name, func(t *testing.T) { check(t, tt) })
	}

	t.Run("loopback admitted by the live config", func(t *testing.T) {
		w.reg.Put("config/global", &straitv1.GatewayConfig{EndpointCidrs: []string{"127.0.0.0/8", "::1/128"}})
		w.export("b", "echo", 9000, "spiffe://a.test")
		endpointWithID(w, "echo", echo)
		if rep := openTunnelStream(t, conn, "echo"); rep.GetCode() != straitv1.StreamCode_STREAM_CODE_ACCEPTED {
			t.Fatalf("echo on loopback: reply %v, want ACCEPTED", rep)
		}
		n := dials.Load()
		w.export("b", "named", 9000, "spiffe://a.test")
		endpointWithID(w, "named", name+":"+port(int(loop4.addr.Port())))
		if rep := openTunnelStream(t, conn, "named"); rep.GetCode() != straitv1.StreamCode_STREAM_CODE_ACCEPTED {
			t.Fatalf("name resolving to loopback: reply %v, want ACCEPTED", rep)
		}
		if dials.Load() != n+1 || !waitFor(func() bool { return loop4.accepted.Load() == 1 }) {
			t.Fatalf("name resolving to loopback: %d dials, %d accepted, want 1 and 1", dials.Load()-n, loop4.accepted.Load())
		}
		loop4.accepted.Store(0)
	})
	for _, tt := range optedIn {
		t.Run(tt.name, func(t *testing.T) { check(t, tt) })
	}
}

// endpointWithID publishes a ready endpoint of default/<svc> in cluster b
// at addr, served by spiffe://b.test/ns/default/sa/<svc>.
func endpointWithID(w *world, svc, addr string) {
	w.reg.add(&straitv1.Endpoint{
		Cluster: "b", Namespace: "default", Service: svc, Id: svc + "-ep",
		Address: addr, Ready: true, SpiffeId: "spiffe://b.test/ns/default/sa/" + svc,
	})
}

// openTunnelStream asks for service default/<svc> port 9000 on conn as
// cluster a and returns the reply.
func openTunnelStream(t testing.TB, conn *quic.Conn, svc string) *straitv1.StreamReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.CancelRead(0)
	defer st.CancelWrite(0)
	if _, err := st.Write(mustHeader(t, &straitv1.StreamHeader{Service: svc, Namespace: "default", Port: 9000, SourceCluster: "a"})); err != nil {
		t.Fatal(err)
	}
	rep, err := tunnel.ReadReply(st, 10*time.Second)
	if err != nil {
		t.Fatalf("%s: no reply: %v", svc, err)
	}
	return rep
}

// waitFor polls cond until it holds or 5 s have passed.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}
