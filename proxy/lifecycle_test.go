package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/internal/demo"
)

// openThrough opens a connection through the client's upstream and checks
// it works end to end.
func openThrough(t *testing.T, client *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", client.UpstreamAddr(0).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	echoOnce(t, c, "hello")
	return c
}

func echoOnce(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo = %q, %v; want %q", buf, err, msg)
	}
}

// TestShutdownDrains: on cancel the proxy stops accepting, withdraws its
// endpoint, and lets an open connection finish.
func TestShutdownDrains(t *testing.T) {
	w := newWorld(t)
	w.reg.setBase(gateway(west, "gw1", ""))
	app, ln := startEcho(t)
	_ = app
	server, stop := w.start(Config{Cluster: west, Service: "echo", ID: "echo-1", InboundListenAddr: "127.0.0.1:0",
		AppAddr: ln.Addr().String(), HealthCheck: HealthCheck{Interval: 50 * time.Millisecond}, SVIDs: w.svid(west, "echo")})
	key := federation.Keyspace{}.Endpoint(west, "default", "echo", "echo-1")
	eventually(t, 5*time.Second, "endpoint ready", func() bool { return w.reg.ready(key) })
	client := w.clientProxy(west, "client", "")
	c := openThrough(t, client)

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	eventually(t, 5*time.Second, "endpoint withdrawn", func() bool { return w.reg.deleted(key) })
	eventually(t, 5*time.Second, "inbound listener closed", func() bool {
		c, err := net.Dial("tcp", server.InboundAddr().String())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	echoOnce(t, c, "still here") // the open connection keeps working
	select {
	case err := <-stopped:
		t.Fatalf("Run returned %v with a connection open", err)
	default:
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("closing: %v", err)
	}
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run() = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the last connection closed")
	}
	if err := server.Run(context.Background()); !errors.Is(err, ErrAlreadyStarted) {
		t.Errorf("second Run() = %v, want ErrAlreadyStarted", err)
	}
}

// TestDrainTimeout: connections still open at the drain deadline are
// closed and Run returns.
func TestDrainTimeout(t *testing.T) {
	const drain = 200 * time.Millisecond
	w := newWorld(t)
	w.reg.setBase(gateway(west, "gw1", ""))
	_, ln := startEcho(t)
	_, stop := w.start(Config{Cluster: west, Service: "echo", ID: "echo-1", InboundListenAddr: "127.0.0.1:0",
		AppAddr: ln.Addr().String(), DrainTimeout: drain, SVIDs: w.svid(west, "echo")})
	key := federation.Keyspace{}.Endpoint(west, "default", "echo", "echo-1")
	eventually(t, 5*time.Second, "endpoint ready", func() bool { return w.reg.ready(key) })
	client := w.clientProxy(west, "client", "")
	c := openThrough(t, client)

	start := time.Now()
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run() = %v", err)
	}
	if took := time.Since(start); took < drain || took > drain+2*time.Second {
		t.Errorf("Run returned after %v, want about %v", took, drain)
	}
	if _, err := io.ReadAll(c); err != nil {
		t.Logf("connection ended with %v", err)
	}
}

// TestHTTPHealthCheckAndGreeting: the demo HTTP app behind a proxy with an
// HTTP health check; a client gets the greeting naming its SPIFFE ID.
func TestHTTPHealthCheckAndGreeting(t *testing.T) {
	w := newWorld(t)
	w.reg.setBase(gateway(west, "gw1", ""))
	app := &demo.HTTPServer{Cluster: west}
	ln := listen(t)
	go func() { _ = app.Serve(ln) }()
	t.Cleanup(func() { _ = app.Close() })

	tests := []struct {
		path  string
		ready bool
	}{{"/healthz", true}, {"/missing", false}}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			id := "web" + map[bool]string{true: "-ok", false: "-bad"}[tt.ready]
			w.run(Config{Cluster: west, Service: "echo", ID: id, InboundListenAddr: "127.0.0.1:0",
				AppAddr:     ln.Addr().String(),
				HealthCheck: HealthCheck{Interval: 50 * time.Millisecond, HTTPPath: tt.path},
				SVIDs:       w.svid(west, "echo")})
			key := federation.Keyspace{}.Endpoint(west, "default", "echo", id)
			eventually(t, 5*time.Second, "endpoint registered", func() bool { _, ok := w.reg.endpoint(key); return ok })
			if got := w.reg.ready(key); got != tt.ready {
				t.Errorf("ready = %v, want %v", got, tt.ready)
			}
		})
	}

	client := w.clientProxy(west, "client", "")
	c, err := net.Dial("tcp", client.UpstreamAddr(0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest(http.MethodGet, "http://echo.default/", nil)
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	want := "hello from cluster west; you are " + westClientID + "\n"
	if string(body) != want {
		t.Errorf("GET / = %q, want %q", body, want)
	}
}

// TestNoProxyHeader: an application that does not read PROXY headers gets
// the caller's bytes only, and passes HTTP health checks.
func TestNoProxyHeader(t *testing.T) {
	w := newWorld(t)
	w.reg.setBase(gateway(west, "gw1", ""))
	ln := listen(t)
	plain := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(rw, "plain\n") })}
	go func() { _ = plain.Serve(ln) }()
	t.Cleanup(func() { _ = plain.Close() })
	w.run(Config{Cluster: west, Service: "echo", ID: "plain-0", InboundListenAddr: "127.0.0.1:0", AppAddr: ln.Addr().String(),
		NoProxyHeader: true, HealthCheck: HealthCheck{Interval: 50 * time.Millisecond, HTTPPath: "/"}, SVIDs: w.svid(west, "echo")})
	key := federation.Keyspace{}.Endpoint(west, "default", "echo", "plain-0")
	eventually(t, 5*time.Second, "endpoint ready", func() bool { return w.reg.ready(key) })
	client := w.clientProxy(west, "client", "")
	c, err := net.Dial("tcp", client.UpstreamAddr(0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest(http.MethodGet, "http://echo.default/", nil)
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "plain\n" {
		t.Errorf("GET / = %q", body)
	}
}
