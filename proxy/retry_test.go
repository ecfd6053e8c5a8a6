package proxy

import (
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// resettingApp listens like an application that dies with connections in
// its accept queue: it accepts each connection and resets it at once, before
// reading a byte. The count of connections goes to accepted.
func resettingApp(t *testing.T) (addr string, accepted chan struct{}) {
	ln := listen(t)
	accepted = make(chan struct{}, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*net.TCPConn).SetLinger(0)
			_ = c.Close()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	return ln.Addr().String(), accepted
}

// TestRetryAfterHandshakeBeforeAnyByte: the local destination completes
// the inner handshake (its application accepted the connection) and then
// resets the caller because its application died before a byte of the
// request was relayed (failover scenario 7: the app was SIGKILLed with the
// connection in its accept queue). Nothing crossed the connection in either
// direction, so the source proxy retries on the next candidate (the
// gateway) with what the application sent, instead of resetting it.
func TestRetryAfterHandshakeBeforeAnyByte(t *testing.T) {
	w := newWorld(t)
	gw := passthroughGateway(t)
	w.reg.setBase(gateway(west, "gw1", gw.Addr()), gateway(east, "gw1", ""), export(west), export(east, "spiffe://"+westTD))
	dying, _ := resettingApp(t)
	local, _ := w.serverProxy(west, "echo-west", func(c *Config) { c.AppAddr = dying })
	remote, remoteApp := w.serverProxy(east, "echo-east")
	gw.forwardTo(remote.InboundAddr().String())
	client := w.clientProxy(west, "client", "")

	appErrors := func() float64 {
		return testutil.ToFloat64(local.metrics.connections.WithLabelValues(dirInbound, resultAppError))
	}
	c, err := net.Dial("tcp", client.UpstreamAddr(0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// The local destination has reset the caller before the request is
	// written (the order in which no byte crosses: a request written
	// first may have been relayed, and is not retried).
	eventually(t, 5*time.Second, "local destination resets the caller", func() bool { return appErrors() >= 1 })
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "ping" {
		t.Fatalf("round trip = %q, %v; want ping from the next candidate", got, err)
	}
	if ids := remoteApp.SPIFFEIDs(); !slices.Equal(ids, []string{westClientID}) {
		t.Errorf("remote app saw %v, want one connection from %s", ids, westClientID)
	}
	if n := testutil.ToFloat64(client.metrics.attempts.WithLabelValues(pathLocal, "error")); n != 1 {
		t.Errorf("failed local attempts = %v, want 1", n)
	}
	if n := gw.accepted.Load(); n != 1 {
		t.Errorf("gateway got %d connections, want 1 (the retry)", n)
	}
}
