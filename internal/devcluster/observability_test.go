package devcluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/strait-mesh/strait/gateway/tunnel"
	"github.com/strait-mesh/strait/trust"
)

// scrape returns the value of every series of name on a gateway's admin
// port whose labels include all of labels (`key="value"`), summed, and the
// whole metrics body it read.
func scrape(t testing.TB, c *Cluster, name string, labels ...string) (float64, string) {
	t.Helper()
	resp, err := http.Get("http://" + c.Gateway.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d, %v", resp.StatusCode, err)
	}
	body := string(b)
	return sumSeries(t, body, name, labels...), body
}

// sumSeries returns the value of every series of name in a metrics body
// whose labels include all of labels, summed.
func sumSeries(t testing.TB, body, name string, labels ...string) float64 {
	t.Helper()
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		series := line[:i]
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(series, l)
		}
		if ok {
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			sum += v
		}
	}
	return sum
}

// seriesOf returns the lines of a metrics body that hold series of name.
func seriesOf(body, name string) string {
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestDevObservability: in dev mode, the admin port serves the Go runtime
// and process metrics, and the profiles when asked to; both layers of a cross-cluster connection negotiate
// the hybrid post-quantum key exchange X25519MLKEM768 and count it; and
// handshakes the west ingress refuses (a workload SVID, a gateway ID of a
// cluster the federation does not know) are counted by reason in
// strait_trust_handshake_failures_total and
// strait_gateway_ingress_handshake_failures_total.
func TestDevObservability(t *testing.T) {
	cfg := testConfig(t)
	cfg.Pprof = true
	f := startFederation(t, cfg)
	east, west := f.Cluster("east"), f.Cluster("west")
	resp, err := http.Get("http://" + east.Gateway.AdminAddr().String() + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/debug/pprof/goroutine with Config.Pprof: %d", resp.StatusCode)
	}

	payload := make([]byte, 64<<10)
	_, _ = rand.Read(payload)
	if got, err := roundTrip(f.UpstreamAddr("east", "echo"), payload); err != nil || len(got) != len(payload) {
		t.Fatalf("round trip: %d bytes, %v", len(got), err)
	}
	for _, tt := range []struct {
		layer string
	}{{"tunnel"}, {"inner"}} {
		// One read for both sums: east may open another pooled connection
		// between two reads.
		all, body := scrape(t, west, "strait_tls_handshakes_total", `layer="`+tt.layer+`"`)
		n := sumSeries(t, body, "strait_tls_handshakes_total", `layer="`+tt.layer+`"`, `group="X25519MLKEM768"`)
		if n < 1 || n != all {
			t.Errorf("west: %v handshakes of layer %s with X25519MLKEM768 out of %v, want all of at least 1; the series:\n%s",
				n, tt.layer, all, seriesOf(body, "strait_tls_handshakes_total"))
		}
	}
	_, body := scrape(t, east, "go_goroutines")
	for _, series := range []string{"go_goroutines ", "go_gc_duration_seconds{", "process_resident_memory_bytes ", "process_open_fds "} {
		if !strings.Contains(body, "\n"+series) {
			t.Errorf("east's admin port lacks %s", series)
		}
	}

	tests := []struct {
		name string
		id   string
	}{
		{"workload SVID", "spiffe://east.strait.local/ns/default/sa/client"},
		{"gateway of a made-up cluster", "spiffe://east.strait.local/strait/gateway/madeup"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svid, err := east.CA.IssueX509SVID(spiffeid.RequireFromString(tt.id), 0)
			if err != nil {
				t.Fatal(err)
			}
			tc := tlsconfig.MTLSClientConfig(svid, east.Node.Bundles, tlsconfig.AuthorizeAny())
			tc.NextProtos, tc.MinVersion = []string{tunnel.ALPN}, tls.VersionTLS13
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := quic.DialAddr(ctx, west.Gateway.IngressAddr().String(), tc, &quic.Config{})
			if err == nil {
				// TLS 1.3: the client finishes first; the ingress closes.
				select {
				case <-conn.Context().Done():
				case <-ctx.Done():
					t.Fatal("the ingress kept the connection")
				}
			}
			want := float64(i + 1)
			deadline := time.Now().Add(10 * time.Second)
			for {
				trustN, _ := scrape(t, west, "strait_trust_handshake_failures_total", `reason="`+string(trust.ReasonUnauthorized)+`"`)
				gwN, _ := scrape(t, west, "strait_gateway_ingress_handshake_failures_total", `reason="unauthorized"`)
				if trustN == want && gwN == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("west counted %v (trust) and %v (gateway) unauthorized handshakes, want %v", trustN, gwN, want)
				}
				time.Sleep(20 * time.Millisecond) // polling a metric; no event to wait on
			}
		})
	}
}
