package proxy

import (
	"context"
	"errors"
	"net"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// TestGatewayRefusal: a gateway that answers with the refusal alert yields
// a *RouteError with its code, and the application's connection is closed
// and counted.
func TestGatewayRefusal(t *testing.T) {
	codes := []straitv1.StreamCode{
		straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED,
		straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED,
		straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT,
		straitv1.StreamCode_STREAM_CODE_DRAINING,
		straitv1.StreamCode_STREAM_CODE_BAD_REQUEST,
		straitv1.StreamCode_STREAM_CODE_INTERNAL,
	}
	for _, code := range codes {
		t.Run(code.String(), func(t *testing.T) {
			w := newWorld(t)
			gw := refusingGateway(t, code)
			w.reg.setBase(gateway(east, "gw1", gw.Addr()), gateway(west, "gw1", ""), export(west, "spiffe://"+eastTD))
			client := w.clientProxy(east, "client", "")

			up := client.cfg.Upstreams[0]
			_, _, err := client.connect(context.Background(), up, client.log)
			var re *RouteError
			if !errors.As(err, &re) || re.Code != code {
				t.Fatalf("connect() error = %v, want a RouteError with %v", err, code)
			}
			if re.Addr != gw.Addr() {
				t.Errorf("RouteError.Addr = %q, want %q", re.Addr, gw.Addr())
			}

			got, err := roundTrip(t, client, []byte("ping"))
			if len(got) != 0 || !isReset(err) {
				t.Errorf("refused connection returned %q, %v; want a reset", got, err)
			}
			eventually(t, 5*time.Second, "refused connection counted", func() bool {
				return testutil.ToFloat64(client.metrics.connections.WithLabelValues(dirOutbound, resultRefused)) == 1
			})
			if n := testutil.ToFloat64(client.metrics.refusals.WithLabelValues(code.String())); n != 2 {
				t.Errorf("refusals{%v} = %v, want 2", code, n)
			}
		})
	}
}

// TestRetryNextCandidate: an attempt that fails before the handshake
// completes moves on to the next candidate, unless the refusal is final.
func TestRetryNextCandidate(t *testing.T) {
	tests := []struct {
		name     string
		first    func(t *testing.T) string // address of the first (local) candidate
		wantOK   bool
		wantCode straitv1.StreamCode
	}{
		{"connection refused", func(t *testing.T) string {
			ln := listen(t)
			addr := ln.Addr().String()
			ln.Close()
			return addr
		}, true, 0},
		{"refused with NO_ENDPOINT", func(t *testing.T) string {
			return refusingGateway(t, straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT).Addr()
		}, true, 0},
		{"refused with DRAINING", func(t *testing.T) string {
			return refusingGateway(t, straitv1.StreamCode_STREAM_CODE_DRAINING).Addr()
		}, true, 0},
		{"closed before the ServerHello", func(t *testing.T) string {
			g := &fakeGateway{ln: listen(t)}
			go g.serve(func(c net.Conn) { _ = c.Close() })
			return g.Addr()
		}, true, 0},
		{"refused with NOT_EXPORTED", func(t *testing.T) string {
			return refusingGateway(t, straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED).Addr()
		}, false, straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			gw := passthroughGateway(t)
			first := tt.first(t)
			// A ready local endpoint is tried first; the gateway second.
			local := &straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "bad",
				Address: first, Ready: true, SpiffeId: echoWestID}
			w.reg.setBase(gateway(west, "gw1", gw.Addr()), gateway(east, "gw1", ""), export(east, "spiffe://"+westTD), local)
			server, app := w.serverProxy(east, "echo-east")
			gw.forwardTo(server.InboundAddr().String())
			client := w.clientProxy(west, "client", "")

			got, err := roundTrip(t, client, []byte("ping"))
			if !tt.wantOK {
				if len(got) != 0 {
					t.Fatalf("got %q, want a refusal", got)
				}
				_, _, err := client.connect(context.Background(), client.cfg.Upstreams[0], client.log)
				var re *RouteError
				if !errors.As(err, &re) || re.Code != tt.wantCode {
					t.Fatalf("connect() error = %v, want code %v", err, tt.wantCode)
				}
				if gw.accepted.Load() != 0 {
					t.Errorf("gateway was tried after a final refusal")
				}
				return
			}
			if err != nil || string(got) != "ping" {
				t.Fatalf("round trip = %q, %v; want ping through the next candidate", got, err)
			}
			if ids := app.SPIFFEIDs(); !slices.Equal(ids, []string{westClientID}) {
				t.Errorf("echo app saw %v", ids)
			}
			if n := testutil.ToFloat64(client.metrics.attempts.WithLabelValues(pathLocal, "error")); n != 1 {
				t.Errorf("failed local attempts = %v, want 1", n)
			}
		})
	}
}

// TestNoCandidate: nothing to try is a NO_ENDPOINT RouteError.
func TestNoCandidate(t *testing.T) {
	w := newWorld(t)
	w.reg.setBase(gateway(west, "gw1", ""))
	client := w.clientProxy(west, "client", "")
	_, _, err := client.connect(context.Background(), client.cfg.Upstreams[0], client.log)
	var re *RouteError
	if !errors.As(err, &re) || re.Code != straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT || !errors.Is(err, ErrNoCandidate) {
		t.Fatalf("connect() error = %v, want NO_ENDPOINT wrapping ErrNoCandidate", err)
	}
}

// TestLocalPreferredThenFailover: while a local endpoint is healthy,
// connections stay local; when its app fails, the endpoint is withdrawn
// within the health interval and new connections go through the gateway
// to the remote cluster without an error.
func TestLocalPreferredThenFailover(t *testing.T) {
	const interval = 50 * time.Millisecond
	w := newWorld(t)
	gw := passthroughGateway(t)
	w.reg.setBase(gateway(west, "gw1", gw.Addr()), gateway(east, "gw1", ""),
		export(west), export(east, "spiffe://"+westTD))
	_, localApp := w.serverProxy(west, "echo-west", func(c *Config) { c.HealthCheck.Interval = interval })
	remote, remoteApp := w.serverProxy(east, "echo-east")
	gw.forwardTo(remote.InboundAddr().String())
	client := w.clientProxy(west, "client", "")

	for range 10 {
		if got, err := roundTrip(t, client, []byte("ping")); err != nil || string(got) != "ping" {
			t.Fatalf("round trip = %q, %v", got, err)
		}
	}
	if n := len(localApp.SPIFFEIDs()); n != 10 {
		t.Errorf("local app served %d of 10 connections", n)
	}
	if n := gw.accepted.Load(); n != 0 {
		t.Errorf("gateway got %d connections while a local endpoint was healthy", n)
	}

	// The local app dies: its endpoint must turn unready within one
	// interval (plus the check's own timeout and scheduling slack).
	key := federation.Keyspace{}.Endpoint(west, "default", "echo", "echo-west")
	stopped := time.Now()
	_ = localApp.Close()
	eventually(t, 2*interval+DefaultHealthTimeout, "local endpoint unready", func() bool { return !w.reg.ready(key) })
	t.Logf("endpoint withdrawn %v after the app stopped (interval %v)", time.Since(stopped).Round(time.Millisecond), interval)
	if ep, ok := w.reg.endpoint(key); !ok || ep.GetReady() {
		t.Fatalf("endpoint record = %v, want ready=false", ep)
	}

	for range 10 {
		if got, err := roundTrip(t, client, []byte("ping")); err != nil || string(got) != "ping" {
			t.Fatalf("after failover: round trip = %q, %v", got, err)
		}
	}
	if n := len(remoteApp.SPIFFEIDs()); n != 10 {
		t.Errorf("remote app served %d of 10 connections after failover", n)
	}
}

// TestLocalSpread: power of two choices spreads concurrent connections
// over the local endpoints.
func TestLocalSpread(t *testing.T) {
	w := newWorld(t)
	w.reg.setBase(gateway(west, "gw1", ""))
	_, a := w.serverProxy(west, "echo-a")
	_, b := w.serverProxy(west, "echo-b")
	client := w.clientProxy(west, "client", "")
	for range 40 {
		if got, err := roundTrip(t, client, []byte("x")); err != nil || string(got) != "x" {
			t.Fatalf("round trip = %q, %v", got, err)
		}
	}
	na, nb := len(a.SPIFFEIDs()), len(b.SPIFFEIDs())
	if na+nb != 40 || na == 0 || nb == 0 {
		t.Errorf("endpoints served %d and %d of 40 connections", na, nb)
	}
}

// isReset reports whether err is a connection reset (or the broken pipe a
// write meets after one).
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
