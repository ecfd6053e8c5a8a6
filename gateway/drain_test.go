package gateway

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// acceptedIngress counts the streams a gateway accepted from cluster.
func acceptedIngress(g *running, cluster string) float64 {
	return value(g.m.streams.WithLabelValues(dirIngress, cluster, tunnel.CodeName(straitv1.StreamCode_STREAM_CODE_ACCEPTED)))
}

// waitGatewayGone waits until the snapshot no longer lists cluster/id.
func waitGatewayGone(t *testing.T, w *world, cluster, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		changed := w.reg.src.Changed()
		found := false
		for _, gw := range w.reg.src.Snapshot().Gateways(cluster) {
			found = found || gw.GetId() == id
		}
		if !found {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("%s/%s still in the snapshot", cluster, id)
		}
	}
}

// TestDrain: a gateway with 100 open streams drains; all 100 complete, new
// streams go to the cluster's other gateway, none fails.
func TestDrain(t *testing.T) {
	const n = 100
	w := newWorld(t, "a", "b")
	w.export("b", "echo", 9000, "spiffe://a.test")
	w.endpoint("b", "echo", "e1", echoServer(t))
	a := w.start(w.config("a", "a1", ""))
	b1 := w.start(w.config("b", "b1", ""))
	hello := clientHello(t, "9000.echo.default.any.strait")

	old := openMany(t, a.EgressAddr(), hello, n)
	if got := b1.ActiveStreams(); got != n {
		t.Fatalf("b1 has %d streams, want %d", got, n)
	}
	b2 := w.start(w.config("b", "b2", ""))

	drained := make(chan error, 1)
	go func() { drained <- b1.Drain(context.Background()) }()
	waitGatewayGone(t, w, "b", "b1")

	fresh := openMany(t, a.EgressAddr(), hello, n)
	finishMany(t, fresh, n)
	if got := acceptedIngress(b2, "a"); got != n {
		t.Fatalf("b2 accepted %v streams, want %d", got, n)
	}
	select {
	case err := <-drained:
		t.Fatalf("drain ended with %d streams open: %v", n, err)
	default:
	}
	finishMany(t, old, 0)
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	if got := acceptedIngress(b1, "a"); got != n {
		t.Fatalf("b1 accepted %v streams, want %d", got, n)
	}
	if got := sum(a.m.refusals); got != 0 {
		t.Fatalf("egress refused %v connections", got)
	}
}

// keepRecord is a registry that ignores the withdrawal of a gateway's
// record, as if the withdrawal had not reached the peers yet.
type keepRecord struct{ *registry }

func (k keepRecord) Put(key string, msg proto.Message) {
	if gw, ok := msg.(*straitv1.Gateway); ok && gw.GetDraining() {
		return
	}
	k.registry.Put(key, msg)
}

func (keepRecord) Delete(string) {}

// TestDrainingRetries: peers that still see a draining gateway get
// DRAINING and retry on the cluster's other gateway.
func TestDrainingRetries(t *testing.T) {
	w := newWorld(t, "a", "b")
	w.export("b", "echo", 9000, "spiffe://a.test")
	w.endpoint("b", "echo", "e1", echoServer(t))
	a := w.start(w.config("a", "a1", ""))
	cfg := w.config("b", "b1", "")
	cfg.Registry = keepRecord{w.reg}
	b1 := w.start(cfg)
	b2 := w.start(w.config("b", "b2", ""))
	hello := clientHello(t, "9000.echo.default.any.strait")
	// Warm up: a connects to both gateways of b.
	for i := 0; acceptedIngress(b1, "a") == 0 || acceptedIngress(b2, "a") == 0; i++ {
		if i == 20 {
			t.Fatal("streams do not spread over b1 and b2")
		}
		if err := finishStream(mustOpen(t, a, hello), payloadFor(i)); err != nil {
			t.Fatal(err)
		}
	}
	warm := acceptedIngress(b2, "a")

	// A stream from elsewhere keeps b1 draining.
	conn := w.dialAs(t, "a", b1)
	st, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(mustHeader(t, &straitv1.StreamHeader{Service: "echo", Namespace: "default", Port: 9000, SourceCluster: "a"})); err != nil {
		t.Fatal(err)
	}
	if rep, err := tunnel.ReadReply(st, 5*time.Second); err != nil || rep.GetCode() != straitv1.StreamCode_STREAM_CODE_ACCEPTED {
		t.Fatalf("held stream: %v %v", rep, err)
	}
	drained := make(chan error, 1)
	go func() { drained <- b1.Drain(context.Background()) }()
	<-b1.DrainStarted()

	const n = 20
	for i := range n {
		if err := finishStream(mustOpen(t, a, hello), payloadFor(i)); err != nil {
			t.Fatal(err)
		}
	}
	refusedDraining := value(b1.m.streams.WithLabelValues(dirIngress, "a", tunnel.CodeName(straitv1.StreamCode_STREAM_CODE_DRAINING)))
	if refusedDraining == 0 || acceptedIngress(b2, "a")-warm != n {
		t.Fatalf("b1 refused %v streams with DRAINING, b2 accepted %v; want >0 and %d", refusedDraining, acceptedIngress(b2, "a"), n)
	}
	_ = st.Close()
	st.CancelRead(0)
	_ = conn.CloseWithError(0, "done")
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
}

func mustOpen(t *testing.T, a *running, hello []byte) *net.TCPConn {
	c, err := openStream(a.EgressAddr(), hello)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDrainBeforeRun(t *testing.T) {
	w := newWorld(t, "a")
	g, err := New(w.config("a", "a1", ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := g.Run(context.Background()); err != nil {
		t.Fatalf("Run after Drain: %v", err)
	}
	if err := g.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Run: %v, want ErrClosed", err)
	}
	if err := g.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}
