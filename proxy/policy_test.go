package proxy

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// TestCrossClusterPolicy: a client in east reaches echo in west through
// east's egress gateway (a TCP pass-through here); west's inbound proxy
// applies the export's consumers.
func TestCrossClusterPolicy(t *testing.T) {
	tests := []struct {
		name      string
		consumers []string
		allowed   bool
	}{
		{"trust domain listed", []string{"spiffe://" + eastTD}, true},
		{"SPIFFE ID listed", []string{"spiffe://other.example", eastClientID}, true},
		{"trust domain with a trailing slash", []string{"spiffe://" + eastTD + "/"}, true},
		{"malformed entry fails closed", []string{"spiffe://" + eastTD, "not a spiffe id"}, false},
		{"no consumers", nil, false},
		{"another workload listed", []string{"spiffe://" + eastTD + "/ns/default/sa/other"}, false},
		{"another trust domain listed", []string{"spiffe://other.example", "not a spiffe id"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			gw := passthroughGateway(t)
			w.reg.setBase(gateway(east, "gw1", gw.Addr()), gateway(west, "gw1", ""), export(west, tt.consumers...))
			server, app := w.serverProxy(west, "echo-1")
			gw.forwardTo(server.InboundAddr().String())
			client := w.clientProxy(east, "client", "")

			got, err := roundTrip(t, client, []byte("ping"))
			if tt.allowed {
				if err != nil || string(got) != "ping" {
					t.Fatalf("round trip = %q, %v; want ping", got, err)
				}
				if ids := app.SPIFFEIDs(); !slices.Equal(ids, []string{eastClientID}) {
					t.Errorf("echo app saw %v", ids)
				}
				return
			}
			if len(got) != 0 || !isReset(err) {
				t.Fatalf("refused caller got %q, %v; want a reset", got, err)
			}
			code := straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED.String()
			eventually(t, 5*time.Second, "refusal counted by the client", func() bool {
				return testutil.ToFloat64(client.metrics.refusals.WithLabelValues(code)) == 1
			})
			eventually(t, 5*time.Second, "refusal counted by the server", func() bool {
				return testutil.ToFloat64(server.metrics.connections.WithLabelValues(dirInbound, resultUnauthorized)) == 1
			})
			if ids := app.SPIFFEIDs(); len(ids) != 0 {
				t.Errorf("echo app saw %v from a refused caller", ids)
			}
		})
	}
}

// TestOwnTrustDomainAlwaysAllowed: callers of the server's own trust domain
// need no consumer entry, even without any export.
func TestOwnTrustDomainAlwaysAllowed(t *testing.T) {
	w := newWorld(t)
	w.reg.setBase(gateway(west, "gw1", ""))
	_, app := w.serverProxy(west, "echo-1")
	client := w.clientProxy(west, "client", "")
	if got, err := roundTrip(t, client, []byte("ping")); err != nil || string(got) != "ping" {
		t.Fatalf("round trip = %q, %v", got, err)
	}
	if ids := app.SPIFFEIDs(); !slices.Equal(ids, []string{westClientID}) {
		t.Errorf("echo app saw %v", ids)
	}
}
