package federation

import (
	"errors"
	"strings"
	"testing"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// TestEndpointAddressValidation: an endpoint address is host:port with an
// IP address or a DNS name; whether the gateway may dial it is decided on
// the resolved address at dial time (gateway.Config.EndpointCIDRs).
func TestEndpointAddressValidation(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"10.0.0.7:8080", true},
		{"[fd00::7]:8080", true},
		{"hello.demo.svc.cluster.local:8080", true},
		{"hello-0.example.org.:8080", true},
		{"localhost:8080", true}, // a name: refused at dial time when it resolves to loopback
		{"127.1:8080", false},
		{"2130706433:8080", false},
		{"0x7f.1:8080", false},
		{"bad_name:8080", false},
		{"-lead.example:8080", false},
		{"trail-.example:8080", false},
		{"a..b:8080", false},
		{"[fe80::1%eth0]:8080", false},
		{"169.254.169.254:80", false},
		{"10.0.0.7", false},
		{"10.0.0.7:0", false},
		{"xn--bcher-kva.example:8080", true},
		{strings.Repeat("a", 64) + ".example:8080", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			ep := &straitv1.Endpoint{Cluster: "b", Namespace: "default", Service: "hello", Id: "e1",
				Address: tt.addr, Ready: true, SpiffeId: "spiffe://b.test/ns/default/sa/hello"}
			err := ValidateRecord(KeyInfo{Kind: KindEndpoint, Cluster: "b", Namespace: "default", Service: "hello", ID: "e1"}, ep)
			if tt.ok && err != nil {
				t.Fatalf("valid address refused: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("invalid address accepted (err %v)", err)
			}
		})
	}
}

func TestEndpointCIDRsValidation(t *testing.T) {
	tests := []struct {
		cidrs []string
		ok    bool
	}{
		{[]string{"10.0.0.0/8", "fd00::/64", "127.0.0.0/8"}, true},
		{[]string{"10.0.0.1"}, false},
		{[]string{"10.0.0.0/33"}, false},
		{[]string{"banana"}, false},
	}
	for _, tt := range tests {
		err := ValidateRecord(KeyInfo{Kind: KindConfig}, &straitv1.GatewayConfig{EndpointCidrs: tt.cidrs})
		if tt.ok != (err == nil) {
			t.Errorf("%v: err %v, want ok=%v", tt.cidrs, err, tt.ok)
		}
	}
}
