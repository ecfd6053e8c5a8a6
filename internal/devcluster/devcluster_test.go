package devcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testConfig is dev mode's topology plus an echo service (exported) and a
// service that west runs but does not export, each with an upstream in east.
func testConfig(t testing.TB) Config {
	cfg := DefaultConfig(t.TempDir())
	cfg.EtcdClientURL = "" // a free port: tests run in parallel with dev mode
	cfg.LeaseTTL = 2 * time.Second
	east, west := &cfg.Clusters[0], &cfg.Clusters[1]
	east.Client.Upstreams = []UpstreamSpec{
		{Service: "hello", Port: 8080},
		{Service: "echo", Port: 7000},
		{Service: "secret", Port: 7001},
	}
	west.Services = append(west.Services,
		ServiceSpec{Name: "echo", Port: 7000, App: AppEcho, Export: true, Consumers: []string{"spiffe://east.strait.local"}},
		ServiceSpec{Name: "secret", Port: 7001, App: AppEcho},
	)
	return cfg
}

// startFederation runs cfg until the test ends and waits until it is ready.
func startFederation(t testing.TB, cfg Config) *Federation {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("federation did not stop within 10s")
		}
	})
	select {
	case <-f.Ready():
	case err := <-done:
		t.Fatalf("Run ended before ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("federation not ready after 60s")
	}
	return f
}

func TestCrossClusterEcho(t *testing.T) {
	f := startFederation(t, testConfig(t))
	want := make([]byte, 1<<20)
	if _, err := rand.Read(want); err != nil {
		t.Fatal(err)
	}
	got, err := roundTrip(f.UpstreamAddr("east", "echo"), want)
	if err != nil {
		t.Fatalf("round trip through east proxy: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("echo returned %d bytes that differ from the 1 MiB sent", len(got))
	}
	seen := f.Cluster("west").Echo["echo"].SPIFFEIDs()
	if len(seen) == 0 || seen[len(seen)-1] != "spiffe://east.strait.local/ns/default/sa/client" {
		t.Fatalf("destination proxy saw callers %v, want the east client's SPIFFE ID", seen)
	}
}

func TestDemoHelloNamesClusterAndCaller(t *testing.T) {
	f := startFederation(t, testConfig(t))
	resp, err := http.Get("http://" + f.UpstreamAddr("east", "hello") + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := "hello from cluster west; you are spiffe://east.strait.local/ns/default/sa/client\n"
	if string(body) != want {
		t.Fatalf("body = %q, want %q", body, want)
	}
}

func TestUnexportedServiceIsRefusedWithCode(t *testing.T) {
	f := startFederation(t, testConfig(t))
	conn, err := net.Dial("tcp", f.UpstreamAddr("east", "secret"))
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		// The proxy's refusal (a reset) can beat the end of connect on a
		// loaded host; the counted code below is the assertion that matters.
	case err != nil:
		t.Fatal(err)
	default:
		assertRefusedWithoutBytes(t, conn)
	}
	// The refusal carries its reason: the east gateway answered the east
	// proxy with NOT_EXPORTED, and the proxy counted it.
	refusals := f.Cluster("east").Metrics
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := testutil.GatherAndCount(refusals, "strait_proxy_route_refusals_total")
		if err != nil {
			t.Fatal(err)
		}
		if got > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no route refusal counted")
		}
		time.Sleep(20 * time.Millisecond) // polling a counter, not waiting for state to settle
	}
	mfs, err := refusals.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, mf := range mfs {
		if mf.GetName() != "strait_proxy_route_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" {
					codes = append(codes, l.GetValue())
				}
			}
		}
	}
	if strings.Join(codes, ",") != "STREAM_CODE_NOT_EXPORTED" {
		t.Fatalf("refusal codes = %v, want [STREAM_CODE_NOT_EXPORTED]", codes)
	}
}

// roundTrip sends data to addr, half-closes, and returns everything read
// back.
func roundTrip(addr string, data []byte) ([]byte, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Write(data)
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(conn)
	if werr := <-errc; werr != nil {
		return got, werr
	}
	return got, err
}

// assertRefusedWithoutBytes checks that conn ends, without a byte and
// without hanging, after the client writes.
func assertRefusedWithoutBytes(t *testing.T, conn net.Conn) {
	t.Helper()
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("hello?"))
	n, err := conn.Read(make([]byte, 16))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection to an unexported service hung instead of being refused")
	}
	if n != 0 {
		t.Fatalf("read %d bytes from an unexported service", n)
	}
}
