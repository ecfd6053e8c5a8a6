package proxy

import (
	"errors"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// TestExportServersWithoutLiveGateway: through a gateway, the caller
// accepts the servers of every cluster that exports the service, also one
// whose gateway its own snapshot does not list yet. The egress gateway
// routes by its own snapshot, which can be newer: in failover scenario 9 a
// restarted west gateway was routed to while the caller's proxy had not
// yet seen its record, and the caller refused west's genuine server as an
// unexpected identity. Servers the exports do not allow stay refused.
func TestExportServersWithoutLiveGateway(t *testing.T) {
	ks := federation.Keyspace{}
	key := federation.ServiceKey{Namespace: "shop", Name: "payments"}
	export := func(cluster string, at int64) federation.Record {
		return federation.Record{Key: ks.Export(cluster, "shop", "payments"), Message: &straitv1.Export{
			Cluster: cluster, Namespace: "shop", Service: "payments", CreatedAt: timestamppb.New(time.Unix(at, 0)),
			Ports: []*straitv1.ServicePort{{Name: "http", Port: 8080, Protocol: straitv1.Protocol_PROTOCOL_TCP}}}}
	}
	gateway := func(cluster string) federation.Record {
		return federation.Record{Key: ks.Gateway(cluster, "gw-0"), Message: &straitv1.Gateway{
			Cluster: cluster, Id: "gw-0", TrustDomain: cluster + ".example",
			SpiffeId: "spiffe://" + cluster + ".example/strait/gateway/" + cluster,
			Address:  "10.0.0.1:4443", EgressAddress: "10.0.0.1:15001"}}
	}
	// West's gateway was known, then its record went (SIGKILL, lease
	// expired); central's gateway is live.
	before := federation.NewSnapshot(1, []federation.Record{gateway("west"), gateway("central"), export("west", 1), export("central", 2)})
	snap := before.Next(2, []federation.Record{gateway("central"), export("west", 1), export("central", 2)})

	tests := []struct {
		id     string
		pinned string
		ok     bool
	}{
		{"spiffe://west.example/ns/shop/sa/payments", "", true},
		{"spiffe://central.example/ns/shop/sa/payments", "", true},
		{"spiffe://west.example/ns/shop/sa/payments", "west", true},
		{"spiffe://west.example/ns/shop/sa/payments", "central", false},
		{"spiffe://west.example/ns/other/sa/payments", "", false},
		{"spiffe://east.example/ns/shop/sa/payments", "", false},
	}
	for _, tt := range tests {
		err := exportServers(snap, key, tt.pinned)(spiffeid.RequireFromString(tt.id))
		if tt.ok && err != nil {
			t.Errorf("%s (pinned %q): refused: %v", tt.id, tt.pinned, err)
		}
		if !tt.ok && !errors.Is(err, ErrUnexpectedServer) {
			t.Errorf("%s (pinned %q): %v, want ErrUnexpectedServer", tt.id, tt.pinned, err)
		}
	}
}
