package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

func fetch(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// The runtime and process metrics are served once, whether the registry
// has its own collectors or not, beside the registry's metrics.
func TestMetricsHandler(t *testing.T) {
	tests := []struct {
		name       string
		collectors bool
	}{{"bare registry", false}, {"registry with runtime collectors", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: "strait_test_total", Help: "A test counter."})
			reg.MustRegister(c)
			c.Inc()
			if tt.collectors {
				reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			}
			code, body := fetch(t, MetricsHandler(reg), "/")
			if code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			for _, family := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total", "strait_test_total"} {
				if n := strings.Count(body, "# TYPE "+family+" "); n != 1 {
					t.Errorf("%s declared %d times", family, n)
				}
			}
			if !strings.Contains(body, "\nstrait_test_total 1\n") {
				t.Error("the registry's own counter is missing")
			}
		})
	}
}

func TestHandlePprof(t *testing.T) {
	mux := http.NewServeMux()
	HandlePprof(mux)
	tests := []struct {
		path     string
		code     int
		contains string // in the body
	}{
		{"/debug/pprof/", http.StatusOK, "goroutine: "},
		{"/debug/pprof/goroutine?debug=1", http.StatusOK, "goroutine profile: total"},
		{"/debug/pprof/heap?gc=1", http.StatusOK, "\x1f\x8b"}, // a gzipped profile
		{"/debug/pprof/profile?seconds=1", http.StatusOK, "\x1f\x8b"},
		{"/debug/pprof/nosuch", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		code, body := fetch(t, mux, tt.path)
		if code != tt.code || !strings.Contains(body, tt.contains) {
			t.Errorf("%s: %d, %d bytes; want %d with %q", tt.path, code, len(body), tt.code, tt.contains)
		}
	}
}
