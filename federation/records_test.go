package federation

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// paymentsID serves payments.shop in west.
const paymentsID = "spiffe://west.example/ns/shop/sa/payments"

func withServers(e *straitv1.Export, servers ...string) *straitv1.Export {
	e = proto.Clone(e).(*straitv1.Export)
	e.Servers = servers
	return e
}

func encode(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := EncodeRecord(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRecordValid(t *testing.T) {
	ks := Keyspace{}
	gw := testGateway("west", "gw-0")
	bundle := &straitv1.TrustBundle{TrustDomain: "west.example", Sequence: 1,
		X509Authorities: [][]byte{testCA(t, "west CA")}, RefreshHint: durationpb.New(time.Minute)}
	endpoint := &straitv1.Endpoint{Cluster: "west", Namespace: "shop", Service: "payments", Id: "pod-1.abc",
		Address: "10.2.0.7:15006", Ports: []*straitv1.ServicePort{tcpPort("http", 8080)},
		SpiffeId: "spiffe://west.example/ns/shop/sa/payments", Ready: true}
	exp := testExport("west", "shop", "payments", time.Now(), tcpPort("http", 8080), tcpPort("grpc", 9090))
	exp.Consumers = []string{"spiffe://east.example", "spiffe://east.example/ns/shop/sa/cart"}
	cfg := &straitv1.GatewayConfig{DrainTimeout: durationpb.New(20 * time.Second),
		Failover: &straitv1.FailoverPolicy{RegionOrder: []string{"eu-west"}, MinHealthyPercent: 70}}
	tests := []struct {
		name  string
		key   string
		value []byte
		want  proto.Message
	}{
		{"gateway", ks.Gateway("west", "gw-0"), encode(t, gw), gw},
		{"export", ks.Export("west", "shop", "payments"), encode(t, exp), exp},
		{"export protojson", ks.Export("west", "shop", "payments"), []byte(protojson.Format(exp)), exp},
		{"endpoint", ks.Endpoint("west", "shop", "payments", "pod-1.abc"), encode(t, endpoint), endpoint},
		{"bundle", ks.Bundle("west.example"), encode(t, bundle), bundle},
		{"global config binary", ks.GlobalConfig(), encode(t, cfg), cfg},
		{"global config protojson", ks.GlobalConfig(),
			[]byte(`  {"drainTimeout": "20s", "failover": {"regionOrder": ["eu-west"], "minHealthyPercent": 70}}`), cfg},
		{"cluster config protojson", ks.ClusterConfig("west"), []byte(`{"idleTimeout":"45s"}`),
			&straitv1.GatewayConfig{IdleTimeout: durationpb.New(45 * time.Second)}},
		{"empty config", ks.GlobalConfig(), nil, &straitv1.GatewayConfig{}},
		{"ipv6 endpoint", ks.Endpoint("west", "shop", "payments", "p"), encode(t, &straitv1.Endpoint{
			Cluster: "west", Namespace: "shop", Service: "payments", Id: "p", Address: "[fd00::7]:15006", SpiffeId: paymentsID}),
			&straitv1.Endpoint{Cluster: "west", Namespace: "shop", Service: "payments", Id: "p", Address: "[fd00::7]:15006", SpiffeId: paymentsID}},
		{"export with servers", ks.Export("west", "shop", "payments"), encode(t, withServers(exp, "payments", "payments-v2.canary")),
			withServers(exp, "payments", "payments-v2.canary")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := DecodeRecord(ks, tt.key, tt.value)
			if err != nil {
				t.Fatalf("DecodeRecord: %v", err)
			}
			if !proto.Equal(rec.Message, tt.want) {
				t.Errorf("decoded %v, want %v", rec.Message, tt.want)
			}
			if rec.Key != tt.key {
				t.Errorf("key = %q", rec.Key)
			}
		})
	}
}

func TestDecodeRecordInvalid(t *testing.T) {
	ks := Keyspace{}
	exportKey := ks.Export("west", "shop", "payments")
	gwKey := ks.Gateway("west", "gw-0")
	epKey := ks.Endpoint("west", "shop", "payments", "p1")
	mutExport := func(f func(e *straitv1.Export)) []byte {
		e := testExport("west", "shop", "payments", time.Now())
		f(e)
		return encode(t, e)
	}
	mutGateway := func(f func(g *straitv1.Gateway)) []byte {
		g := testGateway("west", "gw-0")
		f(g)
		return encode(t, g)
	}
	ep := func(addr string) []byte {
		return encode(t, &straitv1.Endpoint{Cluster: "west", Namespace: "shop", Service: "payments", Id: "p1", Address: addr, SpiffeId: paymentsID})
	}
	epID := func(id string) []byte {
		return encode(t, &straitv1.Endpoint{Cluster: "west", Namespace: "shop", Service: "payments", Id: "p1", Address: "10.0.0.1:15006", SpiffeId: id})
	}
	leaf := func() []byte {
		der := testCA(t, "x")
		return der[:len(der)/2] // truncated DER
	}()
	tests := []struct {
		name   string
		key    string
		value  []byte
		reason string
		want   []string // substrings of the error
	}{
		{"random bytes", exportKey, []byte{0xff, 0xfe, 0x01, 0x02, 0x03}, "decode", []string{"protobuf export"}},
		{"truncated", exportKey, mutExport(func(*straitv1.Export) {})[:10], "decode", nil},
		{"wrong type", exportKey, encode(t, testGateway("west", "gw-0")), "", []string{"invalid record"}},
		{"oversize", exportKey, bytes.Repeat([]byte{'x'}, MaxRecordSize+1), "size", []string{"limit"}},
		{"bad json", exportKey, []byte(`{"cluster": 7}`), "decode", []string{"protojson"}},
		{"key mismatch", exportKey, mutExport(func(e *straitv1.Export) { e.Cluster = "east" }), "validate",
			[]string{`cluster "east" does not match the key's "west"`}},
		{"every problem listed", ks.Export("west", "shop", "payments"), mutExport(func(e *straitv1.Export) {
			e.Ports = []*straitv1.ServicePort{tcpPort("http", 0), tcpPort("http", 80), tcpPort("Bad_Name", 70000)}
			e.Consumers = []string{"https://east.example"}
		}), "validate", []string{"port 0 is not 1-65535", `name "http" is not unique`, "ports[2].name", "70000", "consumer", "problems"}},
		{"no ports", exportKey, mutExport(func(e *straitv1.Export) { e.Ports = nil }), "validate", []string{"at least one port"}},
		{"bad label", ks.Export("West", "shop", "payments"), mutExport(func(e *straitv1.Export) { e.Cluster = "West" }),
			"validate", []string{"lower-case"}},
		{"unknown protocol", exportKey, mutExport(func(e *straitv1.Export) { e.Ports[0].Protocol = 9 }), "validate", []string{"protocol 9"}},
		{"udp port", exportKey, mutExport(func(e *straitv1.Export) {
			e.Ports = append(e.Ports, &straitv1.ServicePort{Name: "dns", Port: 53, Protocol: straitv1.Protocol_PROTOCOL_UDP})
		}), "validate", []string{"ports[1] dns:53/UDP", "Strait carries TCP only"}},
		{"bad servers", exportKey, mutExport(func(e *straitv1.Export) { e.Servers = []string{"api", "Bad_SA", "", "api"} }), "validate",
			[]string{`servers[1]: service account "Bad_SA"`, "servers[2]", `servers[3] "api" is listed twice`}},
		{"endpoint without spiffe id", epKey, epID(""), "validate", []string{"spiffe_id is required"}},
		{"endpoint spiffe id of another namespace", epKey, epID("spiffe://west.example/ns/other/sa/payments"), "validate",
			[]string{"namespace other is not the service's shop"}},
		{"endpoint spiffe id not a workload", epKey, epID("spiffe://west.example/strait/gateway/west"), "validate",
			[]string{"not a workload ID"}},
		{"endpoint malformed spiffe id", epKey, epID("spiffe://West/ns/shop/sa/payments"), "validate", []string{"spiffe_id"}},
		{"metadata address", epKey, ep("169.254.169.254:80"), "validate", []string{"link-local"}},
		{"metadata name", epKey, ep("metadata.google.internal:80"), "validate", []string{"metadata service"}},
		{"unspecified address", epKey, ep("0.0.0.0:15006"), "validate", []string{"unspecified"}},
		{"mapped metadata", epKey, ep("[::ffff:169.254.169.254]:80"), "validate", []string{"link-local"}},
		{"no port", epKey, ep("10.0.0.1"), "validate", []string{"host:port"}},
		{"port zero", epKey, ep("10.0.0.1:0"), "validate", []string{"1-65535"}},
		{"gateway metadata address", gwKey, mutGateway(func(g *straitv1.Gateway) { g.Address = "169.254.169.254:443" }),
			"validate", []string{"link-local"}},
		{"gateway without address", gwKey, mutGateway(func(g *straitv1.Gateway) { g.Address = "" }), "validate", []string{"address is required"}},
		{"gateway id mismatch", gwKey, mutGateway(func(g *straitv1.Gateway) { g.Id = "gw-1" }), "validate", []string{"id"}},
		{"gateway spiffe id in other domain", gwKey, mutGateway(func(g *straitv1.Gateway) {
			g.SpiffeId = "spiffe://evil.example/strait/gateway/west"
		}), "validate", []string{"not in trust domain"}},
		{"bundle without CA", ks.Bundle("west.example"), encode(t, &straitv1.TrustBundle{TrustDomain: "west.example", Sequence: 1}),
			"validate", []string{"at least one CA"}},
		{"bundle with garbage DER", ks.Bundle("west.example"), encode(t, &straitv1.TrustBundle{TrustDomain: "west.example",
			X509Authorities: [][]byte{leaf}}), "validate", []string{"x509_authorities[0]"}},
		{"bundle domain mismatch", ks.Bundle("west.example"), encode(t, &straitv1.TrustBundle{TrustDomain: "east.example",
			X509Authorities: [][]byte{testCA(t, "ca")}}), "validate", []string{"does not match"}},
		{"config unknown json field", ks.GlobalConfig(), []byte(`{"drainTimeoutt":"3s"}`), "decode", []string{"unknown field"}},
		{"config unknown binary field", ks.GlobalConfig(), append(encode(t, &straitv1.GatewayConfig{MaxIncomingStreams: 3}), 0xa8, 0x1f, 0x01),
			"decode", []string{"fields this version does not know"}},
		{"config negative duration", ks.GlobalConfig(), []byte(`{"drainTimeout":"-3s"}`), "validate", []string{"negative"}},
		{"config bad percent", ks.ClusterConfig("west"), []byte(`{"failover":{"minHealthyPercent":101}}`), "validate", []string{"more than 100"}},
		{"unknown key", ks.Root() + "clusters/west/other/x", []byte{}, "key", []string{"not a known record"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRecord(ks, tt.key, tt.value)
			if err == nil {
				t.Fatal("DecodeRecord accepted the record")
			}
			if !errors.Is(err, ErrInvalidRecord) {
				t.Errorf("error %v does not match ErrInvalidRecord", err)
			}
			var ire *InvalidRecordError
			if !errors.As(err, &ire) {
				t.Fatalf("error %T is not an *InvalidRecordError", err)
			}
			if tt.reason != "" && ire.Reason != tt.reason {
				t.Errorf("reason = %q, want %q (%v)", ire.Reason, tt.reason, err)
			}
			if ire.Key != tt.key {
				t.Errorf("key = %q, want %q", ire.Key, tt.key)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "federation: ") {
				t.Errorf("error %q lacks the federation prefix", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

func FuzzDecodeRecord(f *testing.F) {
	ks := Keyspace{}
	keys := []string{
		ks.Gateway("west", "gw-0"), ks.Export("west", "shop", "payments"),
		ks.Endpoint("west", "shop", "payments", "p1"), ks.Bundle("west.example"),
		ks.GlobalConfig(), ks.ClusterConfig("west"),
	}
	f.Add(uint8(0), encode(f, testGateway("west", "gw-0")))
	f.Add(uint8(1), encode(f, testExport("west", "shop", "payments", time.Unix(1, 0))))
	f.Add(uint8(1), []byte(`{"cluster":"west","namespace":"shop","service":"payments","ports":[{"name":"h","port":1}]}`))
	f.Add(uint8(2), encode(f, &straitv1.Endpoint{Cluster: "west", Namespace: "shop", Service: "payments", Id: "p1", Address: "169.254.169.254:80"}))
	f.Add(uint8(3), encode(f, &straitv1.TrustBundle{TrustDomain: "west.example", X509Authorities: [][]byte{{0x30, 0x03, 0x02, 0x01, 0x01}}}))
	f.Add(uint8(4), []byte(`{"drainTimeout":"20s","failover":{"regionOrder":["a"]}}`))
	f.Add(uint8(5), []byte{0xa8, 0x1f, 0x01})
	f.Fuzz(func(t *testing.T, k uint8, value []byte) {
		key := keys[int(k)%len(keys)]
		rec, err := DecodeRecord(ks, key, value)
		if err != nil {
			if !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("error %v does not match ErrInvalidRecord", err)
			}
			return
		}
		// A valid record survives a round trip and stays valid.
		again, err := DecodeRecord(ks, key, encode(t, rec.Message))
		if err != nil {
			t.Fatalf("re-encoded record is invalid: %v", err)
		}
		if !proto.Equal(rec.Message, again.Message) {
			t.Fatalf("round trip changed the record")
		}
	})
}
