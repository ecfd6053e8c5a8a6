package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/wait"
	"github.com/strait-mesh/strait/e2e/wan"
	"github.com/strait-mesh/strait/proxy/proxyproto"
)

func TestParseCluster(t *testing.T) {
	for body, want := range map[string]string{
		`{"cluster":"west","host":"pod1","key":"k"}`:                               "west",
		"hello from cluster central; you are spiffe://east.strait.local/ns/a/sa/b": "central",
		"nothing here": "",
	} {
		if got := ParseCluster([]byte(body)); got != want {
			t.Errorf("ParseCluster(%q) = %q, want %q", body, got, want)
		}
	}
}

func runFor(t *testing.T, g *Generator, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := g.Run(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Run = %v", err)
	}
}

func TestGeneratorRateAndRecords(t *testing.T) {
	srv := &Server{Cluster: "west", Host: "pod1"}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	g, err := NewGenerator(Config{Target: strings.TrimPrefix(hs.URL, "http://"), Rate: 200, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	runFor(t, g, time.Second)
	s := g.History().Summary()
	t.Logf("1 s at 200/s: %s", s)
	if s.Sent < 190 || s.Sent > 202 {
		t.Errorf("sent %d in 1 s at 200/s", s.Sent)
	}
	if s.Failed != 0 || s.ByCluster["west"] != s.Sent {
		t.Errorf("summary %s", s)
	}
	for _, r := range g.History() {
		if r.Local == "" {
			t.Errorf("request %s has no local address", r.Key)
			break
		}
	}
	if st := srv.Stats(); st.Requests != int64(s.Sent) || st.Duplicates != 0 {
		t.Errorf("server saw %+v, want %d requests and no duplicate key", st, s.Sent)
	}
}

func TestGeneratorClassifiesRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	g, err := NewGenerator(Config{Target: addr, Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	runFor(t, g, 100*time.Millisecond)
	s := g.History().Summary()
	if s.Failed == 0 || s.ByKind[KindConnectRefused] != s.Failed {
		t.Errorf("summary %s, want only %s", s, KindConnectRefused)
	}
}

// A failover through a WAN link: west answers, the link is cut, then it
// points at central and heals; the history shows the failures and the times.
func TestHistoryFailover(t *testing.T) {
	west := httptest.NewServer(&Server{Cluster: "west"})
	defer west.Close()
	central := httptest.NewServer(&Server{Cluster: "central"})
	defer central.Close()
	link, err := wan.NewLink(wan.LinkConfig{Listen: "127.0.0.1:0", Backends: []string{strings.TrimPrefix(west.URL, "http://")},
		PartitionMode: wan.Refuse, DisableUDP: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = link.Run(ctx) }()

	g, err := NewGenerator(Config{Target: link.Addr().String(), Rate: 200, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	gctx, gcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	wait.For(t, 5*time.Second, "west answers", func() bool { return g.History().Summary().ByCluster["west"] >= 20 })
	fault := time.Now()
	link.Partition()
	wait.For(t, 5*time.Second, "failures", func() bool { return g.History().Summary().Failed >= 20 })
	if err := link.SetBackends([]string{strings.TrimPrefix(central.URL, "http://")}); err != nil {
		t.Fatal(err)
	}
	link.Heal()
	wait.For(t, 5*time.Second, "central answers", func() bool { return g.History().Summary().ByCluster["central"] >= 20 })
	gcancel()
	<-done

	h := g.History()
	s := h.Summary()
	reroute, ok := h.FirstOKFrom(fault, "central")
	settled, settledOK := h.SettledOn(fault, "central")
	t.Logf("%s; reroute %s, settled %s", s, reroute, settled)
	if !ok || !settledOK {
		t.Fatalf("no reroute to central in history")
	}
	// Requests in flight at the fault fail too (the partition resets them),
	// so failures end, not start, after it; none starts after traffic settled.
	if s.ByKind[KindReset] == 0 {
		t.Errorf("failures %v, want resets", s.ByKind)
	}
	for _, r := range h.Failures() {
		if r.End().Before(fault) || !r.Start.Before(fault.Add(settled)) {
			t.Errorf("failure %s from %s to %s, fault at %s, settled %s later", r.Key, r.Start, r.End(), fault, settled)
		}
	}
}

var _ http.Handler = (*Server)(nil)

type fakeTB struct {
	logs   []string
	failed bool
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Logf(format string, args ...any) {
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Errorf(format string, args ...any) { f.failed = true }
func (f *fakeTB) Failed() bool                      { return f.failed }

func TestReportAndTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.jsonl")
	t.Setenv(ReportEnv, path)
	h := History{{Seq: 1, Start: time.Now(), Latency: time.Millisecond, Cluster: "west"}}
	row := NewRow("gateway SIGKILL", h)
	row.Reroute = 120 * time.Millisecond
	row.SetExcused(2, 21)
	Report(&fakeTB{}, row)
	Report(&fakeTB{failed: true}, Row{Scenario: "partition", Sent: 10, Failed: 3, Reroute: -1, Return: 2 * time.Second})
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := ReadRows(f)
	if err != nil || len(rows) != 2 {
		t.Fatalf("rows %v, %v", rows, err)
	}
	var b strings.Builder
	if err := PrintTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
	for _, want := range []string{"gateway SIGKILL  1     0       2/21         120ms", "partition        10    3       -            -        2s", "FAIL"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q", want)
		}
	}
}

// lockedBuffer is a journal the test reads while the server writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServerJournalAndProxyHeader: behind a PROXY v2 header the server
// answers with the caller's SPIFFE ID, and journals every key before it
// answers; SplitReached tells a failed request whose key reached the server
// from one whose key did not.
func TestServerJournalAndProxyHeader(t *testing.T) {
	journal := &lockedBuffer{}
	srv := &Server{Cluster: "west", Host: "pod1", Journal: journal, ProxyHeader: true}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeListener(ln) }()
	defer ln.Close()

	const caller = "spiffe://east.e2e/ns/default/sa/client"
	get := func(key string, hdr proxyproto.Header) (Reply, error) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return Reply{}, err
		}
		defer c.Close()
		if _, err := hdr.WriteTo(c); err != nil {
			return Reply{}, err
		}
		fmt.Fprintf(c, "GET /?key=%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", key)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return Reply{}, err
		}
		defer resp.Body.Close()
		var r Reply
		return r, json.NewDecoder(resp.Body).Decode(&r)
	}
	withID := proxyproto.Header{Command: proxyproto.Proxy,
		Source: netip.MustParseAddrPort("10.0.0.1:1234"), Destination: netip.MustParseAddrPort("10.0.0.2:80"),
		TLVs: []proxyproto.TLV{{Type: proxyproto.TypeSPIFFEID, Value: []byte(caller)}}}
	tests := []struct {
		key, wantCaller string
		hdr             proxyproto.Header
	}{
		{"k-1", caller, withID},
		{"k-2", "unknown", proxyproto.Header{Command: proxyproto.Local}},
	}
	for _, tt := range tests {
		r, err := get(tt.key, tt.hdr)
		if err != nil {
			t.Fatalf("GET key %s: %v", tt.key, err)
		}
		if r.Cluster != "west" || r.Key != tt.key || r.Caller != tt.wantCaller {
			t.Errorf("GET key %s = %+v, want cluster west, caller %s", tt.key, r, tt.wantCaller)
		}
	}
	keys, err := ReadJournal(strings.NewReader("listening on 127.0.0.1:1\n" + journal.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys["k-1"] != 1 || keys["k-2"] != 1 {
		t.Errorf("journal keys = %v, want k-1 and k-2 once each", keys)
	}
	h := History{{Key: "k-1", Kind: KindReset}, {Key: "k-3", Kind: KindTimeout}, {Key: "k-2"}}
	reached, unreached := h.SplitReached(keys)
	if len(reached) != 1 || reached[0].Key != "k-1" || len(unreached) != 1 || unreached[0].Key != "k-3" {
		t.Errorf("SplitReached = %v, %v; want [k-1], [k-3]", reached, unreached)
	}
}
