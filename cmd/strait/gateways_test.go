package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/gateway"
)

// TestGatewaysLinks: after requests from east to west's hello, `strait
// gateways` shows east's gateway with a live link to west's, with RTT
// percentiles, the streams it carried and no error; the same figures are
// metrics on east's admin port.
func TestGatewaysLinks(t *testing.T) {
	f, _ := startDev(t)
	const requests = 5
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for range requests {
		resp, err := client.Get("http://" + f.UpstreamAddr("east", "hello") + "/")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET hello: %s", resp.Status)
		}
	}
	var rep gatewaysReport
	deadline := time.Now().Add(30 * time.Second)
	for {
		var out bytes.Buffer
		root := newRootCmd()
		root.SetOut(&out)
		root.SetArgs([]string{"gateways", "-o", "json", "--etcd", strings.Join(f.EtcdEndpoints(), ",")})
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatal(err)
		}
		rep = gatewaysReport{}
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
		if l := eastToWest(rep); l != nil && l.Alive && l.RTTP50 > 0 && l.Streams >= requests {
			if l.RTTP95 < l.RTTP50 || l.RTTP99 < l.RTTP95 {
				t.Errorf("RTT percentiles out of order: %+v", l)
			}
			if l.LastError != "" || l.Loss < 0 || l.Loss > 1 || l.SetupP50 <= 0 {
				t.Errorf("east -> west: %+v", l)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no live link east/gw-0 -> west/gw-0 with RTT and %d streams within 30s: %+v", requests, rep)
		}
		<-time.After(100 * time.Millisecond) // the poll's interval
	}
	var table bytes.Buffer
	if err := printGateways(&table, rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
	found := false
	for _, line := range strings.Split(table.String(), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[0] == "east/gw-0" && f[1] == "west/gw-0" && f[2] == "true" {
			found = true
		}
	}
	if !found {
		t.Errorf("table lacks the live link east/gw-0 -> west/gw-0")
	}

	resp, err := client.Get("http://" + f.Cluster("east").Gateway.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"strait_gateway_peer_loss_ratio{", "strait_gateway_peer_open_streams{", "strait_gateway_peer_stream_setup_seconds_count{", "strait_gateway_peer_rtt_seconds{"} {
		if !bytes.Contains(body, []byte(m)) {
			t.Errorf("east's metrics lack %s", m)
		}
	}
}

func eastToWest(rep gatewaysReport) *gateway.LinkStatus {
	for _, g := range rep.Gateways {
		if g.Cluster != "east" || g.Gateway != "gw-0" {
			continue
		}
		for i, l := range g.Links {
			if l.Cluster == "west" && l.Gateway == "gw-0" {
				return &g.Links[i]
			}
		}
	}
	return nil
}
