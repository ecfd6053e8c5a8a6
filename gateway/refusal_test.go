package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// logLines is a slog JSON sink that tests read back.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// find returns the lines with message msg.
func (l *logLines) find(t testing.TB, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(l.buf.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// has reports whether a WARN line with message msg names reason and peer.
func (l *logLines) has(t testing.TB, msg, reason, peer string) bool {
	t.Helper()
	for _, m := range l.find(t, msg) {
		if m["level"] == "WARN" && m["reason"] == reason && m["peer"] == peer {
			return true
		}
	}
	return false
}

// dialIngress opens a tunnel connection to to's ingress presenting svid,
// and returns the connection once the ingress either kept it past its own
// verification (one stream gets a reply) or closed it.
func dialIngress(t testing.TB, w *world, svid *x509svid.SVID, to *running) (accepted bool, cause error) {
	t.Helper()
	tc := tlsconfig.MTLSClientConfig(svid, w.bundles, tlsconfig.AuthorizeAny())
	tc.NextProtos = []string{tunnel.ALPN}
	tc.MinVersion = tls.VersionTLS13
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := quic.DialAddr(ctx, to.IngressAddr().String(), tc, &quic.Config{MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		return false, err
	}
	defer c.CloseWithError(0, "")
	// TLS 1.3: the client finishes before the server has judged its
	// certificate; a stream's reply proves that the server accepted it.
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		return false, err
	}
	_, _ = st.Write(mustHeader(t, &straitv1.StreamHeader{Service: "nope", Namespace: "default", Port: 1, SourceCluster: "x"}))
	if _, err := tunnel.ReadReply(st, 5*time.Second); err != nil {
		return false, err
	}
	return true, nil
}

// untilCounted polls a counter until it reaches want.
func untilCounted(t testing.TB, c prometheus.Collector, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(c) < want {
		if time.Now().After(deadline) {
			t.Fatalf("counter stayed at %v, want %v", testutil.ToFloat64(c), want)
		}
		time.Sleep(10 * time.Millisecond) // polling a counter; no event to wait on
	}
}

// TestIngressRefusesUnknownGateways: the ingress accepts the gateway SVID
// of a cluster the federation knows, in its trust domain, and refuses at
// the handshake every other identity its trust bundles verify, counting
// each refusal once under its reason (in the gateway's and in trust's
// metrics) and logging it at WARN with the peer's claimed ID.
func TestIngressRefusesUnknownGateways(t *testing.T) {
	w := newWorld(t, "a", "b", "c")
	// Certificates from the past and from the future, of two more trust
	// domains whose gateways have records.
	skewed := map[string]time.Duration{"late": -2 * time.Hour, "early": 2 * time.Hour}
	for name, skew := range skewed {
		ca, err := trust.NewCA(trust.CAConfig{TrustDomain: spiffeid.RequireTrustDomainFromString(name + ".test"),
			Now: func() time.Time { return time.Now().Add(skew) }})
		if err != nil {
			t.Fatal(err)
		}
		w.cas[name] = ca
		w.bundles.Add(ca.Bundle())
	}
	for _, c := range []string{"a", "c", "late", "early"} {
		id, _ := trust.GatewayID(w.cas[c].TrustDomain(), c)
		w.reg.Put("gw/"+c, &straitv1.Gateway{Cluster: c, Id: c + "1", TrustDomain: c + ".test", SpiffeId: id.String(), Address: "127.0.0.1:1"})
	}
	reg := prometheus.NewRegistry()
	tm, err := trust.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var logs logLines
	cfg := w.config("b", "b1", "")
	cfg.Metrics, cfg.TrustMetrics, cfg.Logger = reg, tm, logs.logger()
	b := w.start(cfg)

	tests := []struct {
		name   string
		ca     string // issuing CA
		id     string
		reason string // "" means accepted
	}{
		{"gateway of a known cluster", "a", "spiffe://a.test/strait/gateway/a", ""},
		{"gateway of a made-up cluster", "a", "spiffe://a.test/strait/gateway/madeup", "unauthorized"},
		{"gateway of a cluster of another trust domain", "a", "spiffe://a.test/strait/gateway/c", "unauthorized"},
		{"workload", "a", "spiffe://a.test/ns/default/sa/web", "unauthorized"},
		{"gateway SVID not yet valid", "early", "spiffe://early.test/strait/gateway/early", "not_yet_valid"},
		{"gateway SVID expired", "late", "spiffe://late.test/strait/gateway/late", "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := map[string]float64{}
			for _, r := range handshakeFailureReasons() {
				before[r] = testutil.ToFloat64(b.m.handshakeFails.WithLabelValues(r))
			}
			svid, err := w.cas[tt.ca].IssueX509SVID(spiffeid.RequireFromString(tt.id), 0)
			if err != nil {
				t.Fatal(err)
			}
			accepted, cause := dialIngress(t, w, svid, b)
			if tt.reason == "" {
				if !accepted {
					t.Fatalf("refused: %v", cause)
				}
				return
			}
			if accepted {
				t.Fatal("accepted")
			}
			var te *quic.TransportError
			if !errors.As(cause, &te) || !te.Remote {
				t.Fatalf("closed with %v, want a handshake error from the ingress", cause)
			}
			untilCounted(t, b.m.handshakeFails.WithLabelValues(tt.reason), before[tt.reason]+1)
			for r, v := range before {
				if got := testutil.ToFloat64(b.m.handshakeFails.WithLabelValues(r)); r != tt.reason && got != v {
					t.Errorf("strait_gateway_ingress_handshake_failures_total{reason=%q} went from %v to %v", r, v, got)
				}
			}
			// The line is written beside the count: poll for it too.
			deadline := time.Now().Add(10 * time.Second)
			for !logs.has(t, "gateway: ingress handshake refused", tt.reason, tt.id) {
				if time.Now().After(deadline) {
					t.Fatalf("no WARN line with reason %s and peer %s", tt.reason, tt.id)
				}
				time.Sleep(10 * time.Millisecond) // polling the log; no event to wait on
			}
		})
	}
	// Trust's metric counted each certificate refusal once, by reason.
	for reason, want := range map[string]float64{"unauthorized": 3, "not_yet_valid": 1, "expired": 1, "other": 0} {
		if got := sumOf(t, reg, "strait_trust_handshake_failures_total", "reason", reason); got != want {
			t.Errorf("strait_trust_handshake_failures_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	// The accepted connection negotiated the hybrid post-quantum key
	// exchange and was counted.
	if got := sumOf(t, reg, "strait_tls_handshakes_total", "layer", "tunnel", "group", "X25519MLKEM768"); got < 1 {
		t.Errorf("strait_tls_handshakes_total{layer=tunnel,group=X25519MLKEM768} = %v, want at least 1", got)
	}
}

// sumOf adds up the series of a gathered counter whose labels have the
// given values (pairs of name, value).
func sumOf(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// TestRefusedPeerRecoversWhenItsRecordArrives: a gateway whose record has
// not reached the ingress's snapshot yet (it has just started) is refused,
// and gets through once the record arrives, without a restart: its pool
// redials.
func TestRefusedPeerRecoversWhenItsRecordArrives(t *testing.T) {
	w := newWorld(t, "a", "b")
	w.export("b", "echo", 9000, "spiffe://a.test")
	w.endpoint("b", "echo", "e1", echoServer(t))
	b := w.start(w.config("b", "b1", ""))
	acfg := w.config("a", "a1", "")
	acfg.Registry = nil // a's record is written by hand below
	a := w.start(acfg)
	hello := clientHello(t, "9000.echo.default.any.strait")
	if err := finishStreamCtx(a, hello, payloadFor(0)); err == nil {
		t.Fatal("a gateway without a record got through")
	}
	untilCounted(t, b.m.handshakeFails.WithLabelValues("unauthorized"), 1)

	id, _ := trust.GatewayID(w.cas["a"].TrustDomain(), "a")
	w.reg.Put("gw/a", &straitv1.Gateway{Cluster: "a", Id: "a1", TrustDomain: "a.test", SpiffeId: id.String(), Address: a.IngressAddr().String()})
	start := time.Now()
	deadline := start.Add(15 * time.Second)
	var err error
	for i := 1; ; i++ {
		if err = finishStreamCtx(a, hello, payloadFor(i)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused %v after the record arrived: %v", time.Since(start), err)
		}
		time.Sleep(50 * time.Millisecond) // the pool's backoff; nothing to wait on
	}
	t.Logf("through %v after the record arrived", time.Since(start).Round(time.Millisecond))
}

// TestIngressRefusalLogIsRateLimited: a burst of refused handshakes is
// counted in full but logged within the budget of the refusal log, and
// refused streams are logged at WARN with their reason and peer.
func TestIngressRefusalLogIsRateLimited(t *testing.T) {
	w := newWorld(t, "a", "b")
	var logs logLines
	cfg := w.config("b", "b1", "")
	cfg.Logger = logs.logger()
	b := w.start(cfg)

	const n = 60
	svid, err := w.cas["a"].IssueX509SVID(spiffeid.RequireFromString("spiffe://a.test/strait/gateway/madeup"), 0)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range n {
		if accepted, _ := dialIngress(t, w, svid, b); accepted {
			t.Fatal("accepted")
		}
	}
	untilCounted(t, b.m.handshakeFails.WithLabelValues("unauthorized"), n)
	elapsed := time.Since(start)
	lines := len(logs.find(t, "gateway: ingress handshake refused"))
	// The budget: a burst of 20, then ten a second.
	limit := 20 + int(elapsed.Seconds()*10) + 1
	if lines == 0 || lines > limit || lines >= n {
		t.Fatalf("%d refusals in %v logged %d lines, want 1..%d", n, elapsed, lines, min(limit, n-1))
	}
	t.Logf("%d refusals in %v: %d WARN lines", n, elapsed.Round(time.Millisecond), lines)

	// A stream refused by the ingress is logged at WARN with its reason.
	conn := w.dialAs(t, "a", b)
	st, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = st.Write(mustHeader(t, &straitv1.StreamHeader{Service: "nope", Namespace: "default", Port: 9000, SourceCluster: "a"}))
	if rep, err := tunnel.ReadReply(st, 5*time.Second); err != nil || rep.GetCode() != straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED {
		t.Fatalf("got %v %v, want NOT_EXPORTED", rep, err)
	}
	if !logs.has(t, "gateway: stream refused", "not_exported", "spiffe://a.test/strait/gateway/a") {
		t.Error("the refused stream was not logged at WARN with its reason and peer")
	}
}

// TestAdminRuntimeMetricsAndPprof: the admin port serves the Go runtime and
// process metrics whatever registry the gateway uses, and /debug/pprof/
// only when Config.Pprof is set.
func TestAdminRuntimeMetricsAndPprof(t *testing.T) {
	w := newWorld(t, "a")
	tests := []struct {
		name     string
		registry bool // the caller's registry (without runtime collectors) rather than the private one
		pprof    bool
	}{
		{"private registry", false, false},
		{"caller's registry", true, false},
		{"pprof on", false, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := w.config("a", "a"+string(rune('1'+i)), "")
			if tt.registry {
				cfg.Metrics = prometheus.NewRegistry()
			}
			cfg.Pprof = tt.pprof
			g := w.start(cfg)
			code, body := get(t, g, "/metrics")
			for _, series := range []string{"go_goroutines ", "go_memstats_heap_inuse_bytes ", "process_resident_memory_bytes ", "process_cpu_seconds_total ", "strait_gateway_draining{"} {
				if code != http.StatusOK || !strings.Contains(body, "\n"+series) {
					t.Errorf("/metrics (%d) lacks %s", code, series)
				}
			}
			if n := strings.Count(body, "# TYPE go_goroutines "); n != 1 {
				t.Errorf("go_goroutines declared %d times", n)
			}
			want := http.StatusNotFound
			if tt.pprof {
				want = http.StatusOK
			}
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/heap"} {
				if code, _ := get(t, g, path); code != want {
					t.Errorf("%s: %d, want %d", path, code, want)
				}
			}
		})
	}
}

// TestIngressConnectionLimitCounted: a connection refused after its
// handshake, beyond MaxConnsPerPeer, is counted and logged with its reason.
func TestIngressConnectionLimitCounted(t *testing.T) {
	w := newWorld(t, "a", "b")
	var logs logLines
	cfg := w.config("b", "b1", "")
	cfg.MaxConnsPerPeer, cfg.Logger = 1, logs.logger()
	b := w.start(cfg)
	first := w.dialAs(t, "a", b)
	st, err := first.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = st.Write(mustHeader(t, &straitv1.StreamHeader{Service: "x", Namespace: "default", Port: 1, SourceCluster: "a"}))
	if _, err := tunnel.ReadReply(st, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	second := w.dialAs(t, "a", b)
	select {
	case <-second.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the second connection of one peer was kept")
	}
	var ae *quic.ApplicationError
	if cause := context.Cause(second.Context()); !errors.As(cause, &ae) || ae.ErrorCode != ConnErrRefused {
		t.Fatalf("second connection closed with %v, want ConnErrRefused", cause)
	}
	untilCounted(t, b.m.handshakeFails.WithLabelValues(connPeerLimit), 1)
	if !logs.has(t, "gateway: ingress connection refused", connPeerLimit, "spiffe://a.test/strait/gateway/a") {
		t.Error("no WARN line with reason connection_limit and the peer")
	}
}

// TestEgressRefusalLogged: a proxy connection the egress refuses is logged
// at WARN with its reason (beside strait_gateway_egress_refusals_total).
func TestEgressRefusalLogged(t *testing.T) {
	w := newWorld(t, "a", "b")
	var logs logLines
	cfg := w.config("a", "a1", "")
	cfg.Logger = logs.logger()
	a := w.start(cfg)
	got, err := roundTrip(a.EgressAddr(), clientHello(t, "9000.nope.default.any.strait"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, ok := tunnel.ParseRefusal(got); !ok || code != straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED {
		t.Fatalf("got % x, want the NOT_EXPORTED refusal", got)
	}
	if n := testutil.ToFloat64(a.m.refusals.WithLabelValues("not_exported")); n != 1 {
		t.Errorf("strait_gateway_egress_refusals_total{code=not_exported} = %v, want 1", n)
	}
	var warned bool
	for _, l := range logs.find(t, "gateway: egress refused") {
		warned = warned || (l["level"] == "WARN" && l["reason"] == "not_exported" && l["server_name"] == "9000.nope.default.any.strait")
	}
	if !warned {
		t.Error("the refusal was not logged at WARN with its reason and server name")
	}
}
