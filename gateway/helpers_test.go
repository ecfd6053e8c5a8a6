package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// registry is a federation.Registry whose records are merged with fixed
// ones into the snapshots of a StaticSource, as the watch cache would.
type registry struct {
	mu   sync.Mutex
	src  *federation.StaticSource
	base []federation.Record
	recs map[string]proto.Message
	rev  int64
}

func newRegistry() *registry {
	return &registry{src: federation.NewStaticSource(nil), recs: map[string]proto.Message{}}
}

func (r *registry) Put(key string, msg proto.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs[key] = msg
	r.publishLocked()
}

func (r *registry) Delete(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.recs, key)
	r.publishLocked()
}

// add adds fixed records (exports, endpoints).
func (r *registry) add(msgs ...proto.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.base = append(r.base, federation.Record{Message: m})
	}
	r.publishLocked()
}

func (r *registry) publishLocked() {
	r.rev++
	recs := append([]federation.Record(nil), r.base...)
	for k, m := range r.recs {
		recs = append(recs, federation.Record{Key: k, Message: m})
	}
	r.src.Set(federation.NewSnapshot(r.rev, recs))
}

// world is a federation of in-process clusters sharing one registry.
type world struct {
	t       testing.TB
	reg     *registry
	cas     map[string]*trust.CA // by cluster
	bundles *x509bundle.Set
}

func newWorld(t testing.TB, clusters ...string) *world {
	w := &world{t: t, reg: newRegistry(), cas: map[string]*trust.CA{}, bundles: x509bundle.NewSet()}
	for _, c := range clusters {
		ca, err := trust.NewCA(trust.CAConfig{TrustDomain: spiffeid.RequireTrustDomainFromString(c + ".test")})
		if err != nil {
			t.Fatal(err)
		}
		w.cas[c] = ca
		w.bundles.Add(ca.Bundle())
	}
	return w
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("GATEWAY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// config returns a Gateway configuration on loopback with port 0.
func (w *world) config(cluster, id, region string) Config {
	ca := w.cas[cluster]
	gid, err := trust.GatewayID(ca.TrustDomain(), cluster)
	if err != nil {
		w.t.Fatal(err)
	}
	svid, err := ca.IssueX509SVID(gid, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	return Config{
		Cluster: cluster, ID: id, TrustDomain: ca.TrustDomain(), Region: region,
		IngressListenAddr: "127.0.0.1:0", EgressListenAddr: "127.0.0.1:0", AdminListenAddr: "127.0.0.1:0",
		SVIDs: svid, Bundles: w.bundles, Snapshots: w.reg.src, Registry: w.reg,
		Logger: testLogger(w.t),
		// Test endpoints listen on loopback: opt in explicitly.
		EndpointCIDRs: loopbackRanges,
		// Two connections per remote gateway whatever the host's
		// GOMAXPROCS: every test runs over a sharded pool.
		ConnsPerRemoteGateway: 2,
	}
}

// loopbackRanges are the endpoint ranges of tests, whose endpoints listen on
// loopback.
var loopbackRanges = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// running is a gateway started by a test.
type running struct {
	*Gateway
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // what Run returned
}

// start runs a gateway until the test ends and waits until it is ready.
func (w *world) start(cfg Config) *running {
	w.t.Helper()
	g, err := New(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Gateway: g, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = g.Run(ctx)
	}()
	w.t.Cleanup(func() {
		cancel()
		<-r.done
		if r.err != nil && !errors.Is(r.err, context.Canceled) {
			w.t.Errorf("gateway %s/%s: Run: %v", cfg.Cluster, cfg.ID, r.err)
		}
	})
	select {
	case <-g.Ready():
	case <-r.done:
		w.t.Fatalf("gateway %s/%s: Run: %v", cfg.Cluster, cfg.ID, r.err)
	}
	return r
}

// export publishes an export of service default/<name> with port from
// cluster, consumable by the listed trust domains.
func (w *world) export(cluster, name string, port uint32, consumers ...string) {
	w.reg.add(&straitv1.Export{
		Cluster: cluster, Namespace: "default", Service: name,
		Ports:     []*straitv1.ServicePort{{Name: "tcp", Port: port, Protocol: straitv1.Protocol_PROTOCOL_TCP}},
		Consumers: consumers,
		CreatedAt: timestamppb.New(time.Unix(1700000000, 0)),
	})
}

// endpoint publishes a ready endpoint of default/<name> in cluster.
func (w *world) endpoint(cluster, name, id, addr string) {
	w.reg.add(&straitv1.Endpoint{
		Cluster: cluster, Namespace: "default", Service: name, Id: id,
		Address: addr, Ready: true, SpiffeId: "spiffe://" + cluster + ".test/ns/default/sa/" + name,
	})
}

// echoServer is a TCP endpoint that echoes everything and half-closes when
// its peer does.
func echoServer(t testing.TB) string {
	return serve(t, func(c *net.TCPConn) {
		_, _ = io.Copy(c, c)
		_ = c.CloseWrite()
	})
}

// serve runs handler for every connection of a loopback listener.
func serve(t testing.TB, handler func(*net.TCPConn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handler(c.(*net.TCPConn))
			})
		}
	})
	return ln.Addr().String()
}

// clientHello returns the first record a crypto/tls client sends for
// serverName.
func clientHello(t testing.TB, serverName string) []byte {
	t.Helper()
	var buf bytes.Buffer
	c := tls.Client(&captureConn{w: &buf}, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	_ = c.Handshake() // fails once the hello is written
	if buf.Len() == 0 {
		t.Fatal("no ClientHello captured")
	}
	return buf.Bytes()
}

// captureConn records writes and fails reads.
type captureConn struct {
	net.Conn
	w io.Writer
}

func (c *captureConn) Write(b []byte) (int, error)      { return c.w.Write(b) }
func (c *captureConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }
func (c *captureConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *captureConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// roundTrip dials the egress, sends hello and payload, half-closes and
// returns everything the echo returned.
func roundTrip(egress net.Addr, hello, payload []byte) ([]byte, error) {
	c, err := net.DialTCP("tcp", nil, egress.(*net.TCPAddr))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(append(append([]byte(nil), hello...), payload...)); err != nil {
		return nil, err
	}
	if err := c.CloseWrite(); err != nil {
		return nil, err
	}
	return io.ReadAll(c)
}
