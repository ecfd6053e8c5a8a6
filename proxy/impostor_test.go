package proxy_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/internal/devcluster"
	"github.com/strait-mesh/strait/internal/devcluster/devclustertest"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/proxy"
	"github.com/strait-mesh/strait/trust"
)

// TestImpostorEndpoints attacks a running federation (embedded etcd, the
// built-in CAs, real gateways tunnelling over QUIC, real proxies): west
// exports echo.default, served by spiffe://west.strait.local/ns/default/sa/echo
// only, and endpoint records of echo in west point at impostors that hold
// valid SVIDs of
//
//	caller-domain: the remote caller's trust domain (its own identity),
//	caller-self:   the local caller's own identity,
//	other-sa:      the exporter's trust domain with another service account,
//	other-ns:      the exporter's trust domain in another namespace.
//
// Whether a record names the impostor's own identity (honest) or the
// genuine server's (lying), no impostor completes a handshake or reads a
// byte of a request, from the local caller (west) or the remote one (east,
// through both gateways); every refusal is counted with its reason and
// logged at WARN, and the genuine endpoint keeps serving.
func TestImpostorEndpoints(t *testing.T) {
	const genuineID = "spiffe://west.strait.local/ns/default/sa/echo"
	cfg := devcluster.DefaultConfig(t.TempDir())
	cfg.EtcdClientURL = "" // a free port
	cfg.LeaseTTL = 2 * time.Second
	east, west := &cfg.Clusters[0], &cfg.Clusters[1]
	if east.Name != "east" || west.Name != "west" {
		t.Fatalf("dev topology changed: %s, %s", east.Name, west.Name)
	}
	west.Services = append(west.Services, devcluster.ServiceSpec{
		Name: "echo", Port: 7000, App: devcluster.AppEcho, Export: true,
		Consumers: []string{"spiffe://east.strait.local"},
	})
	f := devclustertest.Start(t, cfg)
	wc, ec := f.Cluster("west"), f.Cluster("east")
	etcd, err := clientv3.New(clientv3.Config{Endpoints: f.EtcdEndpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = etcd.Close() })

	impostors := []*impostor{
		startImpostor(t, ec.CA, "spiffe://east.strait.local/ns/default/sa/client", wc.Node.Bundles),
		startImpostor(t, wc.CA, "spiffe://west.strait.local/ns/default/sa/client", wc.Node.Bundles),
		startImpostor(t, wc.CA, "spiffe://west.strait.local/ns/default/sa/other", wc.Node.Bundles),
		startImpostor(t, wc.CA, "spiffe://west.strait.local/ns/other/sa/echo", wc.Node.Bundles),
	}
	names := []string{"caller-domain", "caller-self", "other-sa", "other-ns"}
	genuine := wc.Echo["echo"]
	key := federation.ServiceKey{Namespace: "default", Name: "echo"}
	ks := federation.Keyspace{}

	// put writes the endpoint record of impostor i into etcd, naming id as
	// its server, as anyone who may write the keyspace can.
	put := func(i int, id string) {
		t.Helper()
		ep := &straitv1.Endpoint{
			Cluster: "west", Namespace: "default", Service: "echo", Id: names[i],
			Address: impostors[i].addr(), SpiffeId: id, Ready: true,
			Region: west.Region, Zone: west.Zone, // as near to west's gateway as the genuine one
			Ports: []*straitv1.ServicePort{{Name: "tcp", Port: 7000, Protocol: straitv1.Protocol_PROTOCOL_TCP}},
		}
		b, err := federation.EncodeRecord(ep)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := etcd.Put(context.Background(), ks.Endpoint("west", "default", "echo", names[i]), string(b)); err != nil {
			t.Fatal(err)
		}
	}
	del := func(i int) {
		t.Helper()
		if _, err := etcd.Delete(context.Background(), ks.Endpoint("west", "default", "echo", names[i])); err != nil {
			t.Fatal(err)
		}
	}
	// send makes n requests through a client and returns how many were
	// echoed; every other one must have failed.
	sent := 0
	send := func(c *client, n int) (ok int) {
		t.Helper()
		for range n {
			sent++
			msg := fmt.Sprintf("request %d", sent)
			got, err := roundTrip(c.p.UpstreamAddrByName("echo.default:7000").String(), []byte(msg))
			if err == nil && string(got) == msg {
				ok++
			} else if len(got) != 0 {
				t.Errorf("request %q answered %q", msg, got)
			}
		}
		return ok
	}
	checkImpostors := func(phase string) {
		t.Helper()
		for i, imp := range impostors {
			if h, b := imp.handshakes.Load(), imp.bytes.Load(); h != 0 || b != 0 {
				t.Errorf("%s: impostor %s (%s) completed %d handshakes and read %d bytes, want 0 and 0", phase, names[i], imp.id, h, b)
			}
		}
	}

	t.Run("honest records", func(t *testing.T) {
		local := startClient(t, wc) // echo is local to west
		remote := startClient(t, ec)
		for i, imp := range impostors {
			put(i, imp.id)
		}
		// Each cluster's cache counts the four records: other-ns fails
		// validation on its own, the others name servers the export
		// does not allow.
		for _, c := range []*devcluster.Cluster{wc, ec} {
			eventually(t, c.Name+" counted the impostor records", func() bool {
				return counter(t, c.Metrics, "strait_federation_invalid_records_total", "kind", "endpoint", "reason", "server_identity") == 3 &&
					counter(t, c.Metrics, "strait_federation_invalid_records_total", "kind", "endpoint", "reason", "validate") == 1
			})
			if eps := c.Node.Cache.Snapshot().ReadyEndpoints("west", key); len(eps) != 1 || eps[0].GetSpiffeId() != genuineID {
				t.Fatalf("%s routes to %v, want the genuine endpoint only", c.Name, eps)
			}
		}
		before := len(genuine.SPIFFEIDs())
		if ok := send(local, 20); ok != 20 {
			t.Errorf("local: %d of 20 requests echoed", ok)
		}
		if ok := send(remote, 20); ok != 20 {
			t.Errorf("remote: %d of 20 requests echoed", ok)
		}
		if n := len(genuine.SPIFFEIDs()) - before; n != 40 {
			t.Errorf("the genuine endpoint served %d connections, want 40", n)
		}
		for i, imp := range impostors {
			if n := imp.accepted.Load(); n != 0 {
				t.Errorf("impostor %s was dialed %d times, want 0", names[i], n)
			}
		}
		checkImpostors("honest records")
		for _, c := range []*client{local, remote} {
			if n := c.unexpected(t); n != 0 {
				t.Errorf("%s: %v unexpected servers counted, want 0", c.name, n)
			}
		}
	})

	// Lying records name the genuine server: the snapshot admits them, and
	// the caller's certificate check stops each handshake.
	for i := range impostors {
		t.Run("lying record "+names[i], func(t *testing.T) {
			for j := range impostors {
				del(j)
			}
			put(i, genuineID)
			// New clients each time: their WARN lines are rate limited.
			local := startClient(t, wc)
			remote := startClient(t, ec)
			for _, c := range []*devcluster.Cluster{wc, ec} {
				eventually(t, c.Name+" sees the lying record only", func() bool {
					eps := c.Node.Cache.Snapshot().ReadyEndpoints("west", key)
					return len(eps) == 2 && (eps[0].GetId() == names[i] || eps[1].GetId() == names[i])
				})
			}
			before := len(genuine.SPIFFEIDs())

			// Local: the impostor is refused and the next candidate, the
			// genuine endpoint, serves every request.
			if ok := send(local, 20); ok != 20 {
				t.Errorf("local: %d of 20 requests echoed", ok)
			}
			// Remote: west's ingress picks one of the two endpoints; a
			// request that reached the impostor fails its handshake.
			const n = 20
			ok := send(remote, n)
			if ok == 0 {
				t.Errorf("remote: none of %d requests echoed; the genuine endpoint must keep serving", n)
			}
			if got := len(genuine.SPIFFEIDs()) - before; got != 20+ok {
				t.Errorf("the genuine endpoint served %d connections, want %d", got, 20+ok)
			}
			if imp := impostors[i]; imp.accepted.Load() == 0 {
				t.Errorf("impostor %s was never dialed: the test did not attack", names[i])
			}
			checkImpostors(names[i])
			refusedLocal := local.unexpected(t)
			if refusedLocal < 1 {
				t.Errorf("local: %v unexpected servers counted, want at least 1", refusedLocal)
			}
			if got, want := remote.unexpected(t), float64(n-ok); got != want {
				t.Errorf("remote: %v unexpected servers counted, want %v (one per failed request)", got, want)
			}
			if local.warnings.Load() == 0 {
				t.Error("local: no WARN line for the refused server")
			}
			if ok < n && remote.warnings.Load() == 0 {
				t.Error("remote: no WARN line for the refused server")
			}
			t.Logf("%s: local 20/20 echoed, %v impostor handshakes refused; remote %d/%d echoed, %d refused",
				names[i], refusedLocal, ok, n, n-ok)
		})
	}
}

// impostor is a TLS server holding a valid SVID that is not the one an
// endpoint of echo may be served by. It would echo whatever a caller sent.
type impostor struct {
	ln                   net.Listener
	id                   string
	accepted, handshakes atomic.Int64
	bytes                atomic.Int64
}

func (i *impostor) addr() string { return i.ln.Addr().String() }

func startImpostor(t *testing.T, ca *trust.CA, id string, bundles x509bundle.Source) *impostor {
	t.Helper()
	svid, err := ca.IssueX509SVID(spiffeid.RequireFromString(id), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := trust.ServerTLSConfig(trust.TLSConfig{SVID: svid, Bundles: bundles, Authorizer: tlsconfig.AuthorizeAny()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	imp := &impostor{ln: ln, id: id}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			imp.accepted.Add(1)
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				imp.handshakes.Add(1)
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					imp.bytes.Add(int64(n))
					if n > 0 {
						_, _ = c.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return imp
}

// client is a client-only proxy of a cluster with an upstream to
// echo.default:7000, its own metrics and a count of its WARN lines about
// unexpected servers.
type client struct {
	name     string
	p        *proxy.Proxy
	reg      *prometheus.Registry
	warnings *atomic.Int64
}

func startClient(t *testing.T, c *devcluster.Cluster) *client {
	t.Helper()
	id := "spiffe://" + c.TrustDomain.Name() + "/ns/default/sa/client"
	svid, err := c.CA.IssueX509SVID(spiffeid.RequireFromString(id), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	tm, err := trust.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	warnings := &atomic.Int64{}
	log := slog.New(&warnCounter{Handler: slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}),
		match: "unexpected server", n: warnings}).With("client", c.Name)
	p, err := proxy.New(proxy.Config{
		Cluster: c.Name, ServiceAccount: "client", ID: "test-client",
		Upstreams: []proxy.Upstream{{Service: federation.ServiceKey{Namespace: "default", Name: "echo"}, Port: 7000, ListenAddr: "127.0.0.1:0"}},
		SVIDs:     svid, Bundles: c.Node.Bundles, Snapshots: c.Node.Cache,
		Logger: log, Metrics: reg, TrustMetrics: tm, DrainTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-p.Ready():
	case err := <-done:
		t.Fatalf("client proxy: %v", err)
	}
	return &client{name: c.Name, p: p, reg: reg, warnings: warnings}
}

// unexpected is the number of handshakes the client refused because the
// server was not the identity it dialed.
func (c *client) unexpected(t *testing.T) float64 {
	return counter(t, c.reg, "strait_trust_handshake_failures_total", "reason", "unexpected_server")
}

// warnCounter counts the WARN records whose message contains match.
type warnCounter struct {
	slog.Handler
	match string
	n     *atomic.Int64
}

func (h *warnCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && strings.Contains(r.Message, h.match) {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h *warnCounter) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &warnCounter{Handler: h.Handler.WithAttrs(attrs), match: h.match, n: h.n}
}

func (h *warnCounter) WithGroup(name string) slog.Handler {
	return &warnCounter{Handler: h.Handler.WithGroup(name), match: h.match, n: h.n}
}

// counter sums the counters called name whose labels include the given
// name/value pairs.
func counter(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// eventually polls cond until it holds, for at most 20 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// roundTrip sends msg to addr, half-closes and reads the answer.
func roundTrip(addr string, msg []byte) ([]byte, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return nil, err
	}
	return io.ReadAll(c)
}
