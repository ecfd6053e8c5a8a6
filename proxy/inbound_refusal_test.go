package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/strait-mesh/strait/trust"
)

// jsonLog is a slog JSON sink that tests read back.
type jsonLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *jsonLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// has reports whether a WARN line says msg with the given field values.
func (l *jsonLog) has(t testing.TB, msg string, fields map[string]string) bool {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range bytes.Split(l.buf.Bytes(), []byte("\n")) {
		var m map[string]any
		if len(line) == 0 || json.Unmarshal(line, &m) != nil || m["msg"] != msg || m["level"] != "WARN" {
			continue
		}
		ok := true
		for k, v := range fields {
			ok = ok && m[k] == v
		}
		if ok {
			return true
		}
	}
	return false
}

// TestInboundRefusals: the destination proxy serves a caller that names it
// in its SNI, and refuses (counted by reason, logged at WARN) a caller whose
// SNI is empty, unparsable or names another service, and a caller its
// policy does not admit. The accepted handshake is counted with its key
// exchange, the hybrid post-quantum X25519MLKEM768.
func TestInboundRefusals(t *testing.T) {
	w := newWorld(t)
	w.reg.setBase(gateway(west, "gw1", ""), export(west))
	reg := prometheus.NewRegistry()
	tm, err := trust.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var logs jsonLog
	server, app := w.serverProxy(west, "echo-1", func(c *Config) {
		c.TrustMetrics = tm
		c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})
	westCaller := "spiffe://" + westTD + "/ns/default/sa/client"
	eastCaller := "spiffe://" + eastTD + "/ns/default/sa/client"

	tests := []struct {
		name   string
		caller string // cluster of the caller, whose SA is client
		sni    string
		reason string // "" means served
		msg    string
		peer   string // the peer_id the WARN line names; "" for none
	}{
		{"own service", west, "9000.echo.default.west.strait", "", "", ""},
		{"any cluster", west, "9000.echo.default.any.strait", "", "", ""},
		{"no SNI", west, "", refusedBadSNI, "inbound connection refused", westCaller},
		{"unparsable SNI", west, "echo.example.com", refusedBadSNI, "inbound connection refused", westCaller},
		{"another service", west, "9000.other.default.west.strait", refusedMisrouted, "inbound connection refused", westCaller},
		{"another cluster", west, "9000.echo.default.east.strait", refusedMisrouted, "inbound connection refused", westCaller},
		{"caller not a consumer", east, "9000.echo.default.west.strait", string(trust.ReasonUnauthorized), "inbound handshake refused", eastCaller},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := map[string]float64{}
			for _, r := range inboundRefusalReasons() {
				before[r] = testutil.ToFloat64(server.metrics.inboundRefusals.WithLabelValues(r))
			}
			served := len(app.SPIFFEIDs())
			got, err := dialInbound(t, w, server, tt.caller, tt.sni, []byte("ping"))
			if tt.reason == "" {
				if err != nil || string(got) != "ping" {
					t.Fatalf("got %q, %v; want ping", got, err)
				}
				return
			}
			if len(got) != 0 {
				t.Fatalf("a refused caller got %q back", got)
			}
			eventually(t, 5*time.Second, "refusal counted as "+tt.reason, func() bool {
				return testutil.ToFloat64(server.metrics.inboundRefusals.WithLabelValues(tt.reason)) == before[tt.reason]+1
			})
			for r, v := range before {
				if got := testutil.ToFloat64(server.metrics.inboundRefusals.WithLabelValues(r)); r != tt.reason && got != v {
					t.Errorf("strait_proxy_inbound_refusals_total{reason=%q} went from %v to %v", r, v, got)
				}
			}
			eventually(t, 5*time.Second, "WARN line", func() bool {
				return logs.has(t, tt.msg, map[string]string{"reason": tt.reason, "peer_id": tt.peer})
			})
			if n := len(app.SPIFFEIDs()); n != served {
				t.Errorf("the app served %d connections for a refused caller", n-served)
			}
		})
	}
	if got := tlsHandshakes(t, reg, "inner", "X25519MLKEM768"); got < 2 {
		t.Errorf("strait_tls_handshakes_total{layer=inner,group=X25519MLKEM768} = %v, want at least 2", got)
	}
}

// tlsHandshakes reads strait_tls_handshakes_total of a layer and key
// exchange group, summed over cipher suites.
func tlsHandshakes(t testing.TB, reg *prometheus.Registry, layer, group string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "strait_tls_handshakes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["layer"] == layer && labels["group"] == group {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// dialInbound connects to a proxy's inbound listener as the client of a
// cluster, naming sni, sends msg, half-closes and returns what came back.
func dialInbound(t testing.TB, w *world, to *Proxy, cluster, sni string, msg []byte) ([]byte, error) {
	t.Helper()
	cfg := tlsconfig.MTLSClientConfig(w.svid(cluster, "client"), w.bundles, tlsconfig.AuthorizeAny())
	cfg.ServerName = sni
	raw, err := net.Dial("tcp", to.InboundAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	c := tls.Client(raw, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	_ = c.CloseWrite()
	return io.ReadAll(c)
}
