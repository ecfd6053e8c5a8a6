package proxy

import (
	"bytes"
	"crypto/rand"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

const (
	westClientID = "spiffe://" + westTD + "/ns/default/sa/client"
	eastClientID = "spiffe://" + eastTD + "/ns/default/sa/client"
)

// TestDirectLocalEndpoint: app → outbound proxy → local endpoint's inbound
// proxy → echo app, in one cluster, 1 MiB byte for byte.
func TestDirectLocalEndpoint(t *testing.T) {
	w := newWorld(t)
	w.reg.setBase(gateway(west, "gw1", ""), gateway(east, "gw1", ""), export(west))
	server, app := w.serverProxy(west, "echo-1")
	client := w.clientProxy(west, "client", "")

	msg := make([]byte, 1<<20)
	_, _ = rand.Read(msg)
	got, err := roundTrip(t, client, msg)
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("round trip returned %d bytes, not the %d sent", len(got), len(msg))
	}
	if ids := app.SPIFFEIDs(); !slices.Equal(ids, []string{westClientID}) {
		t.Errorf("echo app saw %v, want [%s]", ids, westClientID)
	}
	ep := server.Endpoint()
	want := &straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "echo-1",
		Address: server.InboundAddr().String(), SpiffeId: "spiffe://" + westTD + "/ns/default/sa/echo", Ready: true,
		Ports: server.cfg.Ports}
	ep = proto.Clone(ep).(*straitv1.Endpoint)
	ep.UpdatedAt = nil
	if !proto.Equal(ep, want) {
		t.Errorf("endpoint record = %v, want %v", ep, want)
	}
	eventually(t, 5e9, "outbound connection counted", func() bool {
		return testutil.ToFloat64(client.metrics.connections.WithLabelValues(dirOutbound, resultOK)) == 1
	})
	if n := testutil.ToFloat64(client.metrics.attempts.WithLabelValues(pathLocal, resultOK)); n != 1 {
		t.Errorf("local attempts = %v, want 1", n)
	}
}
