package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/sync/errgroup"

	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// untrustedClient returns a TLS client configuration presenting cert (nil
// for none) that does not check the server.
func untrustedClient(t testing.TB, svid *x509svid.SVID) *tls.Config {
	c := &tls.Config{
		InsecureSkipVerify: true, NextProtos: []string{tunnel.ALPN}, MinVersion: tls.VersionTLS13,
		// The cheapest key exchange for the attacker, as a flood would pick.
		CurvePreferences: []tls.CurveID{tls.X25519},
	}
	if svid != nil {
		certs, key, err := svid.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(certs, key)
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c
}

// tlsRefusal reports whether err is a TLS alert the gateway sent: the
// handshake was refused by TLS, not timed out, reset or refused before TLS.
func tlsRefusal(err error) bool {
	var te *quic.TransportError
	return errors.As(err, &te) && te.Remote && te.ErrorCode.IsCryptoError()
}

// attemptRefused dials with tc and returns nil if the gateway refused the
// handshake with a TLS alert; anything else (a timeout, CONNECTION_REFUSED,
// a connection left open) is an error.
func attemptRefused(tr *quic.Transport, addr net.Addr, tc *tls.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tr.Dial(ctx, addr, tc, &quic.Config{HandshakeIdleTimeout: 5 * time.Second})
	if err == nil {
		// TLS 1.3: the client may finish before the server checked its
		// certificate; the server then closes the connection.
		select {
		case <-c.Context().Done():
			err = context.Cause(c.Context())
		case <-ctx.Done():
			_ = c.CloseWithError(0, "")
			return errors.New("a connection with a refused certificate stayed open")
		}
	}
	if !tlsRefusal(err) {
		return fmt.Errorf("not a TLS refusal: %w", err)
	}
	return nil
}

// floodChildEnv names the directory of the flood test's gateway process:
// the test binary started with it set runs gateway b (see floodChild)
// instead of the tests.
const floodChildEnv = "STRAIT_GATEWAY_FLOOD_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(floodChildEnv); dir != "" {
		if err := floodChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, "flood gateway:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// floodParams is what the test hands its gateway process.
type floodParams struct {
	CADirs   map[string]string // by cluster
	EchoAddr string
}

// floodAddrs is what the gateway process answers, one JSON line on stdout.
type floodAddrs struct {
	Ingress, Admin string
}

// floodChild runs gateway b of cluster b, whose CAs live in the
// directories of params.json in dir, until its stdin closes: cluster a's
// gateways may consume default/echo, served at EchoAddr.
func floodChild(dir string) error {
	raw, err := os.ReadFile(filepath.Join(dir, "params.json"))
	if err != nil {
		return err
	}
	var p floodParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return err
	}
	cas, bundles := map[string]*trust.CA{}, x509bundle.NewSet()
	for cluster, d := range p.CADirs {
		ca, err := trust.NewCA(trust.CAConfig{TrustDomain: spiffeid.RequireTrustDomainFromString(cluster + ".test"), Dir: d})
		if err != nil {
			return err
		}
		cas[cluster] = ca
		bundles.Add(ca.Bundle())
	}
	aID, _ := trust.GatewayID(cas["a"].TrustDomain(), "a")
	bID, _ := trust.GatewayID(cas["b"].TrustDomain(), "b")
	svid, err := cas["b"].IssueX509SVID(bID, 0)
	if err != nil {
		return err
	}
	reg := newRegistry()
	reg.add(
		&straitv1.Gateway{Cluster: "a", Id: "a1", TrustDomain: "a.test", SpiffeId: aID.String(), Address: "127.0.0.1:1"},
		&straitv1.Export{Cluster: "b", Namespace: "default", Service: "echo", Consumers: []string{"spiffe://a.test"},
			Ports: []*straitv1.ServicePort{{Name: "tcp", Port: 9000, Protocol: straitv1.Protocol_PROTOCOL_TCP}}},
		&straitv1.Endpoint{Cluster: "b", Namespace: "default", Service: "echo", Id: "e1", Address: p.EchoAddr, Ready: true,
			SpiffeId: "spiffe://b.test/ns/default/sa/echo"},
	)
	g, err := New(Config{
		Cluster: "b", ID: "b1", TrustDomain: cas["b"].TrustDomain(),
		IngressListenAddr: "127.0.0.1:0", EgressListenAddr: "127.0.0.1:0", AdminListenAddr: "127.0.0.1:0",
		SVIDs: svid, Bundles: bundles, Snapshots: reg.src, Registry: reg,
		EndpointCIDRs: loopbackRanges, Logger: slog.New(slog.DiscardHandler),
		// No Retry: a client's Initial retransmitted after its Retry would
		// open a second attempt that times out, counted as a timeout. And a
		// long handshake timeout: the flood's clients share two cores with
		// this process (under -race, 4 of 1,000 took over 3 s to answer).
		// Retries and timeouts are TestSilentHandshakes' subject.
		RetryAboveHandshakes: -1, RetryAboveRate: 1e9, HandshakeTimeout: 10 * time.Second,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case <-g.Ready():
	case err := <-done:
		return err
	}
	if err := json.NewEncoder(os.Stdout).Encode(floodAddrs{Ingress: g.IngressAddr().String(), Admin: g.AdminAddr().String()}); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // until the test closes it or dies
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// startFloodGateway runs gateway b in a process of its own (this test
// binary, see TestMain) and returns its addresses.
func startFloodGateway(t *testing.T, p floodParams) floodAddrs {
	t.Helper()
	dir := t.TempDir()
	raw, _ := json.Marshal(p)
	if err := os.WriteFile(filepath.Join(dir, "params.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), floodChildEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = stdin.Close()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("flood gateway process: %v\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("flood gateway process did not stop in 30s\n%s", stderr.String())
		}
	})
	line := make(chan floodAddrs, 1)
	go func() {
		var a floodAddrs
		if err := json.NewDecoder(stdout).Decode(&a); err == nil {
			line <- a
		}
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	select {
	case a := <-line:
		return a
	case <-time.After(60 * time.Second):
		t.Fatalf("flood gateway process not ready in 60s\n%s", stderr.String())
	}
	return floodAddrs{}
}

// gatewayMetrics reads what a gateway process's admin port serves.
func gatewayMetrics(admin string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// handshakeCounts are the ingress's refused handshakes, from its metrics.
type handshakeCounts struct {
	tls       float64 // failures whose reason is the peer's certificate or identity (trust's reasons)
	other     float64 // failures of any other reason (timeouts, peers closing, limits)
	beforeTLS float64 // refused before the handshake
	byReason  map[string]float64
}

// delta is what rose since before, by reason.
func (c handshakeCounts) delta(before handshakeCounts) map[string]float64 {
	out := map[string]float64{}
	for r, v := range c.byReason {
		if d := v - before.byReason[r]; d != 0 {
			out[r] = d
		}
	}
	return out
}

func readHandshakeCounts(admin string) (handshakeCounts, error) {
	mfs, err := gatewayMetrics(admin)
	if err != nil {
		return handshakeCounts{}, err
	}
	c := handshakeCounts{byReason: map[string]float64{}}
	for _, m := range mfs["strait_gateway_ingress_handshake_failures_total"].GetMetric() {
		reason := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "reason" {
				reason = l.GetValue()
			}
		}
		c.byReason[reason] += m.GetCounter().GetValue()
		if slices.Contains(trust.HandshakeFailureReasons(), trust.HandshakeFailureReason(reason)) {
			c.tls += m.GetCounter().GetValue()
		} else {
			c.other += m.GetCounter().GetValue()
		}
	}
	for _, m := range mfs["strait_gateway_ingress_handshakes_refused_total"].GetMetric() {
		c.beforeTLS += m.GetCounter().GetValue()
	}
	return c, nil
}

// heapSampler records the peak heap in use that a gateway process reports
// (go_memstats_heap_inuse_bytes on its admin port), every 100ms.
type heapSampler struct {
	peak    atomic.Uint64
	samples atomic.Int64
}

func (h *heapSampler) run(ctx context.Context, admin string) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		h.sample(admin)
		select {
		case <-ctx.Done():
			h.sample(admin) // the end of the flood
			return
		case <-tick.C:
		}
	}
}

func (h *heapSampler) sample(admin string) {
	v, err := heapOf(admin)
	if err != nil {
		return
	}
	h.samples.Add(1)
	for p := h.peak.Load(); v > p && !h.peak.CompareAndSwap(p, v); p = h.peak.Load() {
	}
}

func heapOf(admin string) (uint64, error) {
	mfs, err := gatewayMetrics(admin)
	if err != nil {
		return 0, err
	}
	ms := mfs["go_memstats_heap_inuse_bytes"].GetMetric()
	if len(ms) == 0 {
		return 0, errors.New("no go_memstats_heap_inuse_bytes")
	}
	return uint64(ms[0].GetGauge().GetValue()), nil
}

// floodPeakHeap bounds the heap in use of the flooded gateway process at
// any moment of a flood.
const floodPeakHeap = 32 << 20

// TestUntrustedHandshakes floods gateway b, running in a process of its
// own, with handshakes whose certificates it must refuse, while gateway a
// relays legitimate traffic through it. Every attempt must end in a TLS
// alert from b (no timeout, no refusal before TLS), b's refusal counters
// must rise by exactly the number of attempts with certificate reasons, b's
// heap in use, sampled in its own process all along, must stay under
// floodPeakHeap, and the legitimate traffic must not fail.
func TestUntrustedHandshakes(t *testing.T) {
	dirs := map[string]string{"a": t.TempDir(), "b": t.TempDir()}
	w := &world{t: t, reg: newRegistry(), cas: map[string]*trust.CA{}, bundles: x509bundle.NewSet()}
	for cluster, d := range dirs {
		ca, err := trust.NewCA(trust.CAConfig{TrustDomain: spiffeid.RequireTrustDomainFromString(cluster + ".test"), Dir: d})
		if err != nil {
			t.Fatal(err)
		}
		w.cas[cluster] = ca
		w.bundles.Add(ca.Bundle())
	}
	b := startFloodGateway(t, floodParams{CADirs: dirs, EchoAddr: echoServer(t)})
	bIngress, err := net.ResolveUDPAddr("udp", b.Ingress)
	if err != nil {
		t.Fatal(err)
	}
	w.export("b", "echo", 9000, "spiffe://a.test")
	bID, _ := trust.GatewayID(w.cas["b"].TrustDomain(), "b")
	w.reg.add(&straitv1.Gateway{Cluster: "b", Id: "b1", TrustDomain: "b.test", SpiffeId: bID.String(), Address: b.Ingress})
	a := w.start(w.config("a", "a1", ""))
	hello := clientHello(t, "9000.echo.default.any.strait")
	if err := finishStreamCtx(a, hello, payloadFor(0)); err != nil {
		t.Fatalf("legitimate traffic before the flood: %v", err)
	}

	// An attacker's CA for the same trust domain name as cluster a.
	evil, err := trust.NewCA(trust.CAConfig{TrustDomain: spiffeid.RequireTrustDomainFromString("a.test")})
	if err != nil {
		t.Fatal(err)
	}
	evilID, _ := trust.GatewayID(evil.TrustDomain(), "a")
	evilSVID, err := evil.IssueX509SVID(evilID, 0)
	if err != nil {
		t.Fatal(err)
	}
	workloadID, _ := trust.WorkloadID(w.cas["a"].TrustDomain(), "default", "app")
	workloadSVID, err := w.cas["a"].IssueX509SVID(workloadID, 0)
	if err != nil {
		t.Fatal(err)
	}
	floodN := 10000
	if raceEnabled {
		floodN = 1000
	}
	tests := []struct {
		name string
		svid *x509svid.SVID
		n    int
	}{
		{"no certificate", nil, 20},
		{"workload SVID of a trusted domain", workloadSVID, 20},
		{"gateway ID from an untrusted CA", evilSVID, floodN},
	}
	// The attacker sends from eight addresses, two handshakes at a time
	// from each: half the ingress's limits (MaxHandshakes in all,
	// MaxHandshakesPerSource from one address; the gateway releases a slot
	// a little after the client saw its alert), so that every attempt
	// reaches TLS.
	const sources, perSource = 8, 2
	var transports []*quic.Transport
	for i := range sources {
		udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(10+i))})
		if err != nil {
			t.Fatal(err)
		}
		tr := &quic.Transport{Conn: udp}
		t.Cleanup(func() {
			_ = tr.Close()
			_ = udp.Close()
		})
		transports = append(transports, tr)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := readHandshakeCounts(b.Admin)
			if err != nil {
				t.Fatal(err)
			}
			heapBefore, err := heapOf(b.Admin)
			if err != nil {
				t.Fatal(err)
			}
			var legit atomic.Int64
			ctx, stop := context.WithCancel(context.Background())
			var heap heapSampler
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				heap.run(ctx, b.Admin)
			}()
			var traffic errgroup.Group
			traffic.Go(func() error { return legitTraffic(ctx, a, hello, &legit) })

			start := time.Now()
			tc := untrustedClient(t, tt.svid)
			var notTLS atomic.Int64
			var firstErr atomic.Value
			var grp sync.WaitGroup
			next := atomic.Int64{}
			for i := range sources * perSource {
				tr := transports[i%sources]
				grp.Go(func() {
					for next.Add(1) <= int64(tt.n) {
						if err := attemptRefused(tr, bIngress, tc); err != nil {
							notTLS.Add(1)
							firstErr.CompareAndSwap(nil, err)
						}
					}
				})
			}
			grp.Wait()
			elapsed := time.Since(start)
			stop()
			<-sampled
			if terr := traffic.Wait(); terr != nil {
				t.Errorf("legitimate traffic failed during the flood: %v", terr)
			}

			// The gateway counts a refusal once its side of the connection
			// is gone, just after the client saw the alert.
			var after handshakeCounts
			deadline := time.Now().Add(10 * time.Second)
			for {
				if after, err = readHandshakeCounts(b.Admin); err != nil {
					t.Fatal(err)
				}
				if after.tls-before.tls >= float64(tt.n) || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("%d refused handshakes in %v (%.0f/s); gateway process heap in use %.1f MiB before, peak %.1f MiB over %d samples; %d legitimate round trips meanwhile; refusals counted: %v by certificate, %v other, %v before TLS (by reason %v)",
				tt.n, elapsed.Round(time.Millisecond), float64(tt.n)/elapsed.Seconds(), mib(heapBefore), mib(heap.peak.Load()), heap.samples.Load(), legit.Load(),
				after.tls-before.tls, after.other-before.other, after.beforeTLS-before.beforeTLS, after.delta(before))
			if n := notTLS.Load(); n > 0 {
				t.Errorf("%d of %d attempts did not end in a TLS refusal; first: %v", n, tt.n, firstErr.Load())
			}
			if got := after.tls - before.tls; got != float64(tt.n) {
				t.Errorf("the gateway counted %v handshakes refused for their certificate, want %d", got, tt.n)
			}
			if got := after.other - before.other; got != 0 {
				t.Errorf("the gateway counted %v handshakes failed for other reasons, want 0", got)
			}
			if got := after.beforeTLS - before.beforeTLS; got != 0 {
				t.Errorf("the gateway refused %v handshakes before TLS, want 0", got)
			}
			if legit.Load() == 0 {
				t.Error("no legitimate traffic completed during the flood")
			}
			if heap.samples.Load() < 2 {
				t.Errorf("only %d heap samples", heap.samples.Load())
			}
			if p := heap.peak.Load(); p > floodPeakHeap {
				t.Errorf("gateway process heap in use peaked at %.1f MiB, bound %.0f MiB", mib(p), mib(floodPeakHeap))
			}
		})
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// legitTraffic runs round trips through a's egress until ctx ends; any
// failure is an error.
func legitTraffic(ctx context.Context, a *running, hello []byte, ok *atomic.Int64) error {
	for i := 0; ctx.Err() == nil; i++ {
		if err := finishStreamCtx(a, hello, payloadFor(i)); err != nil {
			return err
		}
		ok.Add(1)
	}
	return nil
}

func finishStreamCtx(a *running, hello, payload []byte) error {
	c, err := openStream(a.EgressAddr(), hello)
	if err != nil {
		return err
	}
	return finishStream(c, payload)
}
