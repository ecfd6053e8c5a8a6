package proxycmd

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// The proxy's admin port serves the Go runtime and process metrics (its
// registry registers no collector of its own) and /debug/pprof/ only with
// the pprof option.
func TestServeAdmin(t *testing.T) {
	for _, pprof := range []bool{false, true} {
		addr := freeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- serveAdmin(ctx, addr, prometheus.NewRegistry(), pprof, slog.New(slog.DiscardHandler)) }()
		get := func(path string) (int, string) {
			t.Helper()
			deadline := time.Now().Add(5 * time.Second)
			for {
				resp, err := http.Get("http://" + addr + path)
				if err == nil {
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					return resp.StatusCode, string(b)
				}
				if time.Now().After(deadline) {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Millisecond) // the server is starting; nothing to wait on
			}
		}
		code, body := get("/metrics")
		for _, series := range []string{"go_goroutines ", "process_resident_memory_bytes "} {
			if code != http.StatusOK || !strings.Contains(body, "\n"+series) {
				t.Errorf("pprof=%v: /metrics (%d) lacks %s", pprof, code, series)
			}
		}
		want := http.StatusNotFound
		if pprof {
			want = http.StatusOK
		}
		if code, _ := get("/debug/pprof/goroutine?debug=1"); code != want {
			t.Errorf("pprof=%v: /debug/pprof/goroutine %d, want %d", pprof, code, want)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("serveAdmin = %v, want context.Canceled", err)
		}
	}
}
