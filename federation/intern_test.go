package federation

import (
	"testing"
	"time"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// TestDecodeSharesWhatRepeats decodes records of every kind as a cache
// does and checks that each message still equals what was written, that
// the strings and port lists repeated across records are shared, and that
// ports with fields this binary does not know are not.
func TestDecodeSharesWhatRepeats(t *testing.T) {
	ks := Keyspace{}
	s := newSource(0, Source{Name: "x"})
	unknownPort := tcpPort("http", 8080)
	unknownPort.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 7))
	withUnknown := testEndpoint("west", "shop", "cart", "ep-9")
	withUnknown.Ports = []*straitv1.ServicePort{unknownPort}
	exp := testExport("west", "shop", "cart", time.Unix(1, 0))
	exp.Consumers = []string{"spiffe://east.example"}
	exp.Servers = []string{"cart"}
	cfg := &straitv1.GatewayConfig{}
	tests := []struct {
		key string
		msg proto.Message
	}{
		{ks.Endpoint("west", "shop", "cart", "ep-0"), testEndpoint("west", "shop", "cart", "ep-0")},
		{ks.Endpoint("west", "shop", "cart", "ep-1"), testEndpoint("west", "shop", "cart", "ep-1")},
		{ks.Endpoint("west", "shop", "cart", "ep-9"), withUnknown},
		{ks.Export("west", "shop", "cart"), exp},
		{ks.Gateway("west", "gw-0"), testGateway("west", "gw-0")},
		{ks.Gateway("west", "gw-1"), testGateway("west", "gw-1")},
		{ks.ClusterConfig("west"), cfg},
	}
	got := map[string]*entry{}
	for _, tt := range tests {
		e, err := s.decode(ks, tt.key, encode(t, tt.msg), 7)
		if err != nil {
			t.Fatalf("%s: %v", tt.key, err)
		}
		if !proto.Equal(e.message(), tt.msg) {
			t.Errorf("%s: decoded %v, want %v", tt.key, e.message(), tt.msg)
		}
		if e.key != tt.key || e.modRev != 7 {
			t.Errorf("%s: entry key %q revision %d", tt.key, e.key, e.modRev)
		}
		got[tt.key] = e
	}
	ep0 := got[ks.Endpoint("west", "shop", "cart", "ep-0")].msg.(*straitv1.Endpoint)
	ep1 := got[ks.Endpoint("west", "shop", "cart", "ep-1")].msg.(*straitv1.Endpoint)
	ep9 := got[ks.Endpoint("west", "shop", "cart", "ep-9")].msg.(*straitv1.Endpoint)
	gw0 := got[ks.Gateway("west", "gw-0")].msg.(*straitv1.Gateway)
	gw1 := got[ks.Gateway("west", "gw-1")].msg.(*straitv1.Gateway)
	same := func(name, a, b string) {
		t.Helper()
		if unsafe.StringData(a) != unsafe.StringData(b) {
			t.Errorf("%s: %q and %q are two copies", name, a, b)
		}
	}
	same("endpoint SPIFFE IDs", ep0.GetSpiffeId(), ep1.GetSpiffeId())
	same("gateway trust domains", gw0.GetTrustDomain(), gw1.GetTrustDomain())
	same("gateway regions", gw0.GetRegion(), gw1.GetRegion())
	if &ep0.GetPorts()[0] != &ep1.GetPorts()[0] {
		t.Error("two endpoints with the same ports hold two port lists")
	}
	if exp := got[ks.Export("west", "shop", "cart")].msg.(*straitv1.Export); &exp.GetPorts()[0] != &ep0.GetPorts()[0] {
		t.Error("an export and an endpoint with the same ports hold two port lists")
	}
	if &ep9.GetPorts()[0] == &ep0.GetPorts()[0] {
		t.Error("a port with unknown fields was replaced by a shared one")
	}
	if c := cap(ep0.GetPorts()); c != len(ep0.GetPorts()) {
		t.Errorf("shared port list has spare capacity %d: an append would write into it", c)
	}
	if cc, ok := got[ks.ClusterConfig("west")].msg.(*clusterConfig); !ok || cc.cluster != "west" {
		t.Errorf("configuration entry %T does not name its cluster", got[ks.ClusterConfig("west")].msg)
	}
}

// TestInternerForgetsPastItsLimit checks that the interner's tables do not
// grow past their limit (values that stopped repeating are not kept
// forever) and that a value interned after a reset is still equal.
func TestInternerForgetsPastItsLimit(t *testing.T) {
	in := newInterner()
	in.limit = 4
	for i := range 10 {
		v := string(rune('a' + i))
		if got := in.str(v); got != v {
			t.Fatalf("str(%q) = %q", v, got)
		}
		if len(in.strs) > in.limit {
			t.Fatalf("%d strings held, limit %d", len(in.strs), in.limit)
		}
		in.portList([]*straitv1.ServicePort{tcpPort(v, 80)})
		if len(in.ports) > in.limit {
			t.Fatalf("%d port lists held, limit %d", len(in.ports), in.limit)
		}
	}
}

// TestValueSum checks that the sum that replaced the raw values tells
// apart values that differ in one byte or in length, and matches equal
// values held in different buffers.
func TestValueSum(t *testing.T) {
	a := encode(t, testGateway("west", "gw-0"))
	b := append([]byte(nil), a...)
	if sumOf(a) != sumOf(b) {
		t.Fatal("equal values have different sums")
	}
	b[len(b)-1] ^= 1
	if sumOf(a) == sumOf(b) {
		t.Error("values differing in their last byte have the same sum")
	}
	if sumOf(a) == sumOf(append(a[:len(a):len(a)], 0)) {
		t.Error("a value and its extension by a zero byte have the same sum")
	}
}
