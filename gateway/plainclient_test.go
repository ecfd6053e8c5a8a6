package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// TestEgressResetsPlainClients: a client that is not a Strait proxy (a pod
// without a sidecar whose connection to a ServiceImport's address lands on
// the egress) is reset at once: it reads ECONNRESET and not one byte, the
// refusal counter rises by exactly one under the case's reason, and a WARN
// line names the reason and the client's address. Bytes that cannot start
// a ClientHello are reset on arrival, before the header timeout; a client
// that sends nothing is reset at the header timeout. A TLS client that
// names something else than a Strait service still gets the TLS alert its
// library reports.
func TestEgressResetsPlainClients(t *testing.T) {
	const headerTimeout = 2 * time.Second
	w := newWorld(t, "a")
	var logs logLines
	cfg := w.config("a", "a1", "")
	cfg.Logger, cfg.HeaderTimeout = logs.logger(), headerTimeout
	a := w.start(cfg)
	egress := a.EgressAddr().String()

	// send dials the egress, writes b and reads until the connection
	// ends, returning what it read, the local address and the read error.
	send := func(t *testing.T, b []byte) (got []byte, local string, err error) {
		c, err := net.Dial("tcp", egress)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * headerTimeout))
		if len(b) > 0 {
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
		}
		got, err = io.ReadAll(c)
		return got, c.LocalAddr().String(), err
	}
	tests := []struct {
		name   string
		run    func(t *testing.T) (got []byte, local string, err error)
		reason string // the refusal's code label
		prompt bool   // reset before the header timeout
	}{
		{name: "HTTP request of a client without a sidecar", reason: resetNotTLS, prompt: true,
			run: func(t *testing.T) ([]byte, string, error) {
				var local string
				var d net.Dialer
				tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					c, err := d.DialContext(ctx, network, addr)
					if err == nil {
						local = c.LocalAddr().String()
					}
					return c, err
				}}
				req, _ := http.NewRequest(http.MethodGet, "http://"+egress+"/", nil)
				req.Host = "hello.demo.svc.clusterset.local:8080"
				resp, err := (&http.Client{Transport: tr, Timeout: 3 * headerTimeout}).Do(req)
				if err == nil {
					resp.Body.Close()
					return []byte(resp.Status), local, nil
				}
				return nil, local, err
			}},
		{name: "two plaintext bytes, then waiting", reason: resetNotTLS, prompt: true,
			run: func(t *testing.T) ([]byte, string, error) { return send(t, []byte("GE")) }},
		{name: "TLS ClientHello without a server name", reason: resetNoSNI, prompt: true,
			run: func(t *testing.T) ([]byte, string, error) { return send(t, clientHello(t, "")) }},
		{name: "TLS record that holds no ClientHello", reason: resetMalformedHello, prompt: true,
			run: func(t *testing.T) ([]byte, string, error) { return send(t, []byte{22, 3, 1, 0, 4, 2, 0, 0, 0}) }},
		{name: "silent client", reason: resetHelloTimeout,
			run: func(t *testing.T) ([]byte, string, error) { return send(t, nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, total := testutil.ToFloat64(a.m.refusals.WithLabelValues(tt.reason)), sum(a.m.refusals)
			start := time.Now()
			got, local, err := tt.run(t)
			elapsed := time.Since(start)
			if !errors.Is(err, syscall.ECONNRESET) || len(got) != 0 {
				t.Fatalf("read %q, %v; want nothing and ECONNRESET", got, err)
			}
			if tt.prompt && elapsed >= headerTimeout {
				t.Errorf("reset after %v, want before the header timeout (%v)", elapsed, headerTimeout)
			}
			if !tt.prompt && elapsed < headerTimeout {
				t.Errorf("reset after %v, before the header timeout (%v)", elapsed, headerTimeout)
			}
			t.Logf("reset after %v: %v", elapsed.Round(time.Millisecond), err)
			// Counted and logged before the reset was sent.
			if n := testutil.ToFloat64(a.m.refusals.WithLabelValues(tt.reason)) - before; n != 1 {
				t.Errorf("strait_gateway_egress_refusals_total{code=%q} rose by %v, want 1", tt.reason, n)
			}
			if n := sum(a.m.refusals) - total; n != 1 {
				t.Errorf("strait_gateway_egress_refusals_total rose by %v in all, want 1", n)
			}
			var warned bool
			for _, l := range logs.find(t, "gateway: egress reset a connection that is not a proxy's TLS") {
				warned = warned || l["level"] == "WARN" && l["reason"] == tt.reason && l["peer_addr"] == local
			}
			if !warned {
				t.Errorf("no WARN line with reason %s and peer_addr %s", tt.reason, local)
			}
		})
	}

	// A TLS client naming something else than a Strait service (curl
	// https:// without a sidecar) reads the BAD_REQUEST alert, as before.
	before := sum(a.m.refusals)
	got, err := roundTrip(a.EgressAddr(), clientHello(t, "hello.demo.svc.clusterset.local"), nil)
	if code, ok := tunnel.ParseRefusal(got); err != nil || !ok || code != straitv1.StreamCode_STREAM_CODE_BAD_REQUEST {
		t.Errorf("TLS client naming no service: read % x, %v; want the BAD_REQUEST alert", got, err)
	}
	if n := testutil.ToFloat64(a.m.refusals.WithLabelValues("bad_request")); n != 1 || sum(a.m.refusals)-before != 1 {
		t.Errorf("strait_gateway_egress_refusals_total{code=bad_request} = %v, want 1", n)
	}
}
