package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

var upstreamAnswer = netip.MustParseAddr("192.0.2.1")

// fakeUpstream answers every A query with upstreamAnswer, over UDP and TCP.
func fakeUpstream(t *testing.T) string {
	t.Helper()
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for range 20 {
		if pc, ln, err = listenPair(context.Background(), "127.0.0.1:0"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(); ln.Close() })
	answer := func(q []byte) []byte {
		var m dnsmessage.Message
		if err := m.Unpack(q); err != nil || len(m.Questions) != 1 {
			return nil
		}
		m.Header.Response = true
		m.Answers = []dnsmessage.Resource{{
			Header: dnsmessage.ResourceHeader{Name: m.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
			Body:   &dnsmessage.AResource{A: upstreamAnswer.As4()},
		}}
		b, _ := m.Pack()
		return b
	}
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(answer(buf[:n]), from)
		}
	}()
	go serveTCP(ln, answer)
	return pc.LocalAddr().String()
}

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run() = %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("Run() = %v", err)
	}
	return s
}

// exchange sends one question and returns the parsed answer.
func exchange(t *testing.T, network, addr, name string, typ dnsmessage.Type) dnsmessage.Message {
	t.Helper()
	q := dnsmessage.Message{Header: dnsmessage.Header{ID: 4242, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}}}
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout(network, addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var resp []byte
	if network == "tcp" {
		if err := writeTCPMessage(c, b); err != nil {
			t.Fatal(err)
		}
		if resp, err = readTCPMessage(c); err != nil {
			t.Fatal(err)
		}
	} else {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		resp = buf[:n]
	}
	var m dnsmessage.Message
	if err := m.Unpack(resp); err != nil {
		t.Fatal(err)
	}
	if m.Header.ID != 4242 || !m.Header.Response {
		t.Fatalf("bad response header %+v", m.Header)
	}
	return m
}

func aRecords(m dnsmessage.Message) []netip.Addr {
	var out []netip.Addr
	for _, a := range m.Answers {
		if r, ok := a.Body.(*dnsmessage.AResource); ok {
			out = append(out, netip.AddrFrom4(r.A))
		}
	}
	return out
}

func TestServer(t *testing.T) {
	snap := federation.NewSnapshot(1, []federation.Record{
		{Message: &straitv1.Gateway{Cluster: "west", Id: "gw1"}},
		{Message: &straitv1.Export{Cluster: "west", Namespace: "default", Service: "echo", CreatedAt: timestamppb.Now()}},
	})
	s := startServer(t, Config{Upstream: fakeUpstream(t), Services: federation.NewStaticSource(snap)})
	addr := s.Addr().String()

	var vip netip.Addr
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			tests := []struct {
				name    string
				typ     dnsmessage.Type
				rcode   dnsmessage.RCode
				answers int
			}{
				{"echo.default.svc.clusterset.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, 1},
				{"ECHO.Default.svc.clusterset.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, 1},
				{"echo.default.svc.clusterset.local.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, 0},
				{"other.default.svc.clusterset.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, 0},
				{"a.echo.default.svc.clusterset.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, 0},
				{"svc.clusterset.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, 0},
				{"example.com.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, 1},
			}
			for _, tt := range tests {
				m := exchange(t, network, addr, tt.name, tt.typ)
				if m.Header.RCode != tt.rcode || len(m.Answers) != tt.answers {
					t.Errorf("%s %v: rcode %v, %d answers; want %v, %d", tt.name, tt.typ, m.Header.RCode, len(m.Answers), tt.rcode, tt.answers)
					continue
				}
				got := aRecords(m)
				if tt.name == "example.com." {
					if got[0] != upstreamAnswer {
						t.Errorf("forwarded answer = %v", got)
					}
					continue
				}
				if len(got) == 1 {
					if !netip.MustParsePrefix(DefaultVIPRange).Contains(got[0]) {
						t.Errorf("VIP %v outside %v", got[0], DefaultVIPRange)
					}
					if vip.IsValid() && got[0] != vip {
						t.Errorf("VIP changed from %v to %v", vip, got[0])
					}
					vip = got[0]
				}
			}
		})
	}
	if key, ok := s.VIPs().ServiceForAddr(vip); !ok || key != (federation.ServiceKey{Namespace: "default", Name: "echo"}) {
		t.Errorf("ServiceForAddr(%v) = %v, %v", vip, key, ok)
	}
}

func TestVIPTable(t *testing.T) {
	tbl, err := NewVIPTable(netip.MustParsePrefix("10.0.0.0/30"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	for _, name := range []string{"a", "b", "c"} {
		a, err := tbl.Assign(federation.ServiceKey{Namespace: "ns", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if seen[a] || a == netip.MustParseAddr("10.0.0.0") || !netip.MustParsePrefix("10.0.0.0/30").Contains(a) {
			t.Errorf("address %v for %s: duplicate or out of range", a, name)
		}
		seen[a] = true
	}
	if _, err := tbl.Assign(federation.ServiceKey{Namespace: "ns", Name: "d"}); !errors.Is(err, ErrVIPRangeFull) {
		t.Errorf("fourth Assign() = %v, want ErrVIPRangeFull", err)
	}
	// Stable across tables: the address is a function of the name.
	t1, _ := NewVIPTable(netip.MustParsePrefix(DefaultVIPRange))
	t2, _ := NewVIPTable(netip.MustParsePrefix(DefaultVIPRange))
	k := federation.ServiceKey{Namespace: "default", Name: "payments"}
	a1, _ := t1.Assign(k)
	a2, _ := t2.Assign(k)
	if a1 != a2 {
		t.Errorf("VIP differs across restarts: %v, %v", a1, a2)
	}
	if _, err := NewVIPTable(netip.MustParsePrefix("fd00::/64")); err == nil {
		t.Error("IPv6 range accepted")
	}
}

func TestUpstreamFromResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte("# comment\nsearch x\nnameserver 10.96.0.10\nnameserver 1.1.1.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Config{ResolvConf: path}.withDefaults()
	if err != nil || cfg.Upstream != "10.96.0.10:53" {
		t.Errorf("Upstream = %q, %v", cfg.Upstream, err)
	}
	if _, err := (Config{ResolvConf: filepath.Join(t.TempDir(), "missing")}).withDefaults(); err == nil {
		t.Error("missing resolv.conf accepted")
	}
}

func FuzzHandle(f *testing.F) {
	q := dnsmessage.Message{Header: dnsmessage.Header{ID: 1},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName("echo.default.svc.clusterset.local."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}}
	b, _ := q.Pack()
	f.Add(b)
	s, err := New(Config{Upstream: "127.0.0.1:1", UpstreamTimeout: time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var p dnsmessage.Parser
		if _, err := p.Start(in); err == nil {
			if q, err := p.Question(); err == nil {
				if _, local := s.localName(q.Name.String()); !local {
					return // would be forwarded
				}
			}
		}
		_ = s.handle(context.Background(), in, "udp")
	})
}

// tcpOnlyUpstream answers A queries over TCP only (nothing listens on UDP
// at its port): 60 records for big.example., one for other names.
func tcpOnlyUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serveTCP(ln, func(q []byte) []byte {
		var m dnsmessage.Message
		if err := m.Unpack(q); err != nil || len(m.Questions) != 1 {
			return nil
		}
		m.Header.Response = true
		n := 1
		if m.Questions[0].Name.String() == "big.example." {
			n = 60
		}
		for i := range n {
			m.Answers = append(m.Answers, dnsmessage.Resource{
				Header: dnsmessage.ResourceHeader{Name: m.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
				Body:   &dnsmessage.AResource{A: [4]byte{192, 0, 2, byte(i + 1)}},
			})
		}
		b, _ := m.Pack()
		return b
	})
	return ln.Addr().String()
}

// serveTCP answers each DNS query on ln's connections (one per connection,
// length-prefixed) with answer's message, or closes it when answer
// returns nil; it returns when ln is closed.
func serveTCP(ln net.Listener, answer func(q []byte) []byte) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			q, err := readTCPMessage(c)
			if err != nil {
				return
			}
			if a := answer(q); a != nil {
				_ = writeTCPMessage(c, a)
			}
		}()
	}
}

// TestForwardOverTCP: queries outside the local domain reach the upstream
// resolver over TCP whatever the client used (the upstream here has no
// UDP listener), so that no UDP conntrack entry of the proxy's can capture
// a later query of the application's from the same port (see forward);
// an answer larger than a UDP client's limit comes back truncated (TC) for
// the client to ask again over TCP.
func TestForwardOverTCP(t *testing.T) {
	s := startServer(t, Config{Upstream: tcpOnlyUpstream(t)})
	addr := s.Addr().String()
	tests := []struct {
		network, name string
		answers       int
		truncated     bool
	}{
		{"udp", "example.com.", 1, false},
		{"tcp", "example.com.", 1, false},
		{"udp", "big.example.", 0, true},
		{"tcp", "big.example.", 60, false},
	}
	for _, tt := range tests {
		m := exchange(t, tt.network, addr, tt.name, dnsmessage.TypeA)
		if len(m.Answers) != tt.answers || m.Header.Truncated != tt.truncated || m.Header.RCode != dnsmessage.RCodeSuccess {
			t.Errorf("%s %s: %d answers, truncated %v, rcode %v; want %d, %v, success", tt.network, tt.name, len(m.Answers), m.Header.Truncated, m.Header.RCode, tt.answers, tt.truncated)
		}
	}
}
