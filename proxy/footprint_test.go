package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// Environment of the footprint measurement and of its child processes.
const (
	envFootprint = "STRAIT_FOOTPRINT"      // "1" runs the measurement
	envRole      = "STRAIT_FOOTPRINT_ROLE" // "client" or "server" in a child
	envDir       = "STRAIT_FOOTPRINT_DIR"  // PEM files and address files
	envTarget    = "STRAIT_FOOTPRINT_TARGET"
)

// TestFootprint measures the resident memory and CPU time of one outbound
// and one inbound proxy, each in its own process, idle and under 1000
// requests per second of 1 KiB (echoed) over persistent connections. It is
// a measurement, not a gate: it runs only with STRAIT_FOOTPRINT=1
// (STRAIT_FOOTPRINT_SECONDS sets the load duration, default 20).
func TestFootprint(t *testing.T) {
	if role := os.Getenv(envRole); role != "" {
		footprintChild(t, role)
		return
	}
	if os.Getenv(envFootprint) != "1" {
		t.Skip("set STRAIT_FOOTPRINT=1 to measure")
	}
	seconds := 20
	if s, err := strconv.Atoi(os.Getenv("STRAIT_FOOTPRINT_SECONDS")); err == nil && s > 0 {
		seconds = s
	}
	dir := t.TempDir()
	writeIdentities(t, dir)
	_, ln := startEcho(t)

	server := startChild(t, dir, "server", ln.Addr().String())
	client := startChild(t, dir, "client", server.addr)

	// Warm up, then measure idle.
	conns := dialWorkers(t, client.addr, 25)
	for _, c := range conns {
		echo1K(t, c)
	}
	time.Sleep(2 * time.Second) // let the processes settle: this is a measurement, not a wait for state
	idle := map[string]procStat{"client": readProc(t, client.pid), "server": readProc(t, server.pid)}

	n, lat := load(t, conns, 1000, time.Duration(seconds)*time.Second)
	after := map[string]procStat{"client": readProc(t, client.pid), "server": readProc(t, server.pid)}

	slices.Sort(lat)
	t.Logf("load: %d requests of 1 KiB in %ds over %d connections (%.0f rps); latency p50 %v p99 %v",
		n, seconds, len(conns), float64(n)/float64(seconds), lat[len(lat)/2], lat[len(lat)*99/100])
	for _, role := range []string{"client", "server"} {
		i, a := idle[role], after[role]
		cpu := a.cpu - i.cpu
		t.Logf("%s proxy: RSS idle %.1f MiB, under load %.1f MiB (peak %.1f MiB); CPU %.2fs for %d requests = %.3f CPU-s per 1000 requests (%.3f vCPU at 1000 rps)",
			role, mib(i.rss), mib(a.rss), mib(a.hwm), cpu.Seconds(), n, cpu.Seconds()/float64(n)*1000, cpu.Seconds()/float64(seconds))
	}
}

type child struct {
	pid  int
	addr string
}

// startChild runs this test binary as a proxy process and waits for the
// address it listens on.
func startChild(t *testing.T, dir, role, target string) child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFootprint$", "-test.count=1")
	cmd.Env = append(os.Environ(), envRole+"="+role, envDir+"="+dir, envTarget+"="+target, "GOMAXPROCS=2")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	path := filepath.Join(dir, role+".addr")
	var addr []byte
	eventually(t, 20*time.Second, role+" proxy address", func() bool {
		b, err := os.ReadFile(path)
		addr = b
		return err == nil && len(b) > 0
	})
	return child{pid: cmd.Process.Pid, addr: string(addr)}
}

// footprintChild is the proxy process: it runs until SIGTERM.
func footprintChild(t *testing.T, role string) {
	dir, target := os.Getenv(envDir), os.Getenv(envTarget)
	td := spiffeid.RequireTrustDomainFromString(westTD)
	svid, err := x509svid.Load(filepath.Join(dir, role+".crt"), filepath.Join(dir, role+".key"))
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := x509bundle.Load(td, filepath.Join(dir, "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Cluster: west, SVIDs: svid, Bundles: bundle}
	if role == "server" {
		cfg.Service, cfg.ID, cfg.ServiceAccount = "echo", "echo-0", "server"
		cfg.InboundListenAddr, cfg.AppAddr = "127.0.0.1:0", target
		cfg.HealthCheck = HealthCheck{Interval: time.Second}
		cfg.Snapshots = federation.NewStaticSource(nil)
	} else {
		cfg.ServiceAccount = "client"
		cfg.Upstreams = []Upstream{{Service: echoKey, Port: 9000, ListenAddr: "127.0.0.1:0"}}
		cfg.Snapshots = federation.NewStaticSource(federation.NewSnapshot(1, []federation.Record{
			{Message: gateway(west, "gw1", "")},
			{Message: &straitv1.Endpoint{Cluster: west, Namespace: "default", Service: "echo", Id: "echo-0",
				Address: target, Ready: true, SpiffeId: "spiffe://" + westTD + "/ns/default/sa/server"}},
		}))
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		<-p.Ready()
		addr := p.InboundAddr()
		if role == "client" {
			addr = p.UpstreamAddr(0)
		}
		_ = os.WriteFile(filepath.Join(dir, role+".addr.tmp"), []byte(addr.String()), 0o600)
		_ = os.Rename(filepath.Join(dir, role+".addr.tmp"), filepath.Join(dir, role+".addr"))
	}()
	_ = p.Run(ctx)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(os.Stderr, "footprint %s proxy: heap in use %.1f MiB, stacks %.1f MiB, Go runtime total %.1f MiB, goroutines at exit %d\n",
		role, mib(int64(ms.HeapInuse)), mib(int64(ms.StackInuse)), mib(int64(ms.Sys)), runtime.NumGoroutine())
}

// writeIdentities writes the SVIDs of both proxies and the bundle.
func writeIdentities(t *testing.T, dir string) {
	t.Helper()
	ca, err := trust.NewCA(trust.CAConfig{TrustDomain: spiffeid.RequireTrustDomainFromString(westTD)})
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"client", "server"} {
		id, _ := trust.WorkloadID(ca.TrustDomain(), "default", role)
		svid, err := ca.IssueX509SVID(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		certs, key, err := svid.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, role+".crt"), certs)
		writeFile(t, filepath.Join(dir, role+".key"), key)
	}
	b, err := ca.Bundle().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "bundle.pem"), b)
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func dialWorkers(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	return conns
}

var payload1K = []byte(strings.Repeat("s", 1024))

func echo1K(t testing.TB, c net.Conn) {
	if _, err := c.Write(payload1K); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(payload1K))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
}

// load sends rate requests per second in total, spread over conns, for d.
func load(t *testing.T, conns []net.Conn, rate int, d time.Duration) (int, []time.Duration) {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	interval := time.Duration(len(conns)) * time.Second / time.Duration(rate)
	begin := time.Now()
	for i, c := range conns {
		wg.Go(func() {
			// Open loop: request k of this worker is due at a fixed time;
			// a late worker catches up instead of skipping requests.
			offset := interval * time.Duration(i) / time.Duration(len(conns))
			for k := 0; ; k++ {
				due := begin.Add(offset + time.Duration(k)*interval)
				if due.Sub(begin) >= d {
					return
				}
				time.Sleep(time.Until(due))
				start := time.Now()
				echo1K(t, c)
				mu.Lock()
				lat = append(lat, time.Since(start))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return len(lat), lat
}

type procStat struct {
	rss, hwm int64 // bytes
	cpu      time.Duration
}

// readProc reads a process's resident memory and CPU time from /proc.
func readProc(t *testing.T, pid int) procStat {
	t.Helper()
	var st procStat
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			if f[0] == "VmRSS:" {
				st.rss = kb << 10
			} else {
				st.hwm = kb << 10
			}
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may contain spaces): utime and
	// stime are fields 14 and 15 of the whole line, in clock ticks (100/s).
	rest := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseInt(rest[11], 10, 64)
	stime, _ := strconv.ParseInt(rest[12], 10, 64)
	st.cpu = time.Duration(utime+stime) * 10 * time.Millisecond
	return st
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
