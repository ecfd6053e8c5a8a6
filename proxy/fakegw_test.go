package proxy

import (
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// fakeGateway stands in for a cluster's egress gateway over plain TCP: it
// either forwards each connection to a fixed address (as the real gateway
// does through its QUIC tunnel, without terminating the inner TLS) or
// refuses it with the refusal alert.
type fakeGateway struct {
	ln       net.Listener
	accepted atomic.Int64
	target   atomic.Value // string
}

// forwardTo sets where a pass-through gateway forwards.
func (g *fakeGateway) forwardTo(addr string) { g.target.Store(addr) }

// Addr is the gateway's egress address.
func (g *fakeGateway) Addr() string { return g.ln.Addr().String() }

// passthroughGateway forwards every connection to the address set with
// forwardTo.
func passthroughGateway(t testing.TB) *fakeGateway {
	g := &fakeGateway{ln: listen(t)}
	go g.serve(func(c net.Conn) {
		defer c.Close()
		target, _ := g.target.Load().(string)
		up, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer up.Close()
		done := make(chan struct{})
		go func() {
			_, _ = io.Copy(up, c)
			_ = up.(*net.TCPConn).CloseWrite()
			close(done)
		}()
		_, _ = io.Copy(c, up)
		_ = c.(*net.TCPConn).CloseWrite()
		<-done
	})
	return g
}

// refusingGateway answers every connection with the refusal of code, after
// reading the start of the ClientHello as the real gateway does.
func refusingGateway(t testing.TB, code straitv1.StreamCode) *fakeGateway {
	g := &fakeGateway{ln: listen(t)}
	go g.serve(func(c net.Conn) {
		defer c.Close()
		_, _ = c.Read(make([]byte, 512))
		_ = tunnel.WriteRefusal(c, code)
	})
	return g
}

func (g *fakeGateway) serve(handle func(net.Conn)) {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.accepted.Add(1)
		go handle(c)
	}
}
