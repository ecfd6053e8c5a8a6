package demo

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/proxyproto"
)

const clientID = "spiffe://east.strait.local/ns/default/sa/client"

// dialWithHeader connects to addr and sends a PROXY header naming id.
func dialWithHeader(t *testing.T, addr net.Addr, id string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := proxyproto.Header{Command: proxyproto.Proxy,
		Source: netip.MustParseAddrPort("10.0.0.1:1234"), Destination: netip.MustParseAddrPort("10.0.0.2:80")}
	if id != "" {
		h.TLVs = []proxyproto.TLV{{Type: proxyproto.TypeSPIFFEID, Value: []byte(id)}}
	} else {
		h = proxyproto.Header{Command: proxyproto.Local}
	}
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	return c
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestHTTPServer(t *testing.T) {
	s := &HTTPServer{Cluster: "west"}
	ln := listen(t)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()

	tests := []struct {
		name, id, path, want string
	}{
		{"caller", clientID, "/", "hello from cluster west; you are " + clientID + "\n"},
		{"local header", "", "/", "hello from cluster west; you are unknown\n"},
		{"healthz", "", "/healthz", "ok\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialWithHeader(t, ln.Addr(), tt.id)
			req, _ := http.NewRequest(http.MethodGet, "http://demo"+tt.path, nil)
			if err := req.Write(c); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != tt.want {
				t.Errorf("GET %s = %d %q, want 200 %q", tt.path, resp.StatusCode, body, tt.want)
			}
		})
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve() = %v, want ErrServerClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
}

func TestHTTPServerWithoutHeader(t *testing.T) {
	s := &HTTPServer{Cluster: "west"}
	ln := listen(t)
	go func() { _ = s.Serve(ln) }()
	defer s.Close()
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("GET without PROXY header succeeded: %s", resp.Status)
		}
	}
}

func TestEchoServer(t *testing.T) {
	s := &EchoServer{}
	ln := listen(t)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()

	_ = dialWithHeader(t, ln.Addr(), "") // a health check: not recorded
	c := dialWithHeader(t, ln.Addr(), clientID)
	msg := strings.Repeat("echo ", 1000)
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != msg {
		t.Fatalf("echo = %d bytes, %v; want %d bytes", len(got), err, len(msg))
	}
	if ids := s.SPIFFEIDs(); !slices.Equal(ids, []string{clientID}) {
		t.Errorf("SPIFFEIDs() = %v", ids)
	}

	// Close ends open connections too.
	open := dialWithHeader(t, ln.Addr(), clientID)
	_ = open.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve() = %v, want ErrServerClosed", err)
	}
	if _, err := open.Read(make([]byte, 1)); err == nil {
		t.Error("connection still open after Close")
	}
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &EchoServer{Addr: "127.0.0.1:0"}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for s.ListenAddr() == nil {
		if time.Now().After(deadline) {
			t.Fatal("echo server did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run() = %v, want context.Canceled", err)
	}
}
