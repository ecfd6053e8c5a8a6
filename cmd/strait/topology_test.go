package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/gateway"
)

// chromium returns Debian's chromium, skipping the test without it (and
// failing under CI, which installs it).
func chromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is required under CI: %v", err)
		}
		t.Skipf("no chromium: %v", err)
	}
	return path
}

// headless runs chromium headless on url with extra flags and returns its
// standard output.
func headless(t *testing.T, bin, url string, flags ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--window-size=1000,620", "--virtual-time-budget=3000"}, flags...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", flags, err, stderr.String())
	}
	return string(out)
}

// artifactDir is where the browser test keeps its screenshots: .cache/ at
// the module root (ignored by git).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", ".cache", "topology"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

var linkRE = regexp.MustCompile(`<line [^>]*class="link"[^>]*>`)

// renderedLink returns the health and stroke colour the page drew for the
// link from -> to, or "" when it drew none.
func renderedLink(dom, from, to string) (health, stroke string) {
	for _, l := range linkRE.FindAllString(dom, -1) {
		if strings.Contains(l, `data-from="`+from+`"`) && strings.Contains(l, `data-to="`+to+`"`) {
			return attr(l, "data-health"), attr(l, "stroke")
		}
	}
	return "", ""
}

func attr(tag, name string) string {
	m := regexp.MustCompile(` ` + regexp.QuoteMeta(name) + `="([^"]*)"`).FindStringSubmatch(tag)
	if m == nil {
		return ""
	}
	return m[1]
}

func fetchTopology(t *testing.T, admin string) gateway.Topology {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/topology.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var top gateway.Topology
	if err := json.NewDecoder(resp.Body).Decode(&top); err != nil {
		t.Fatal(err)
	}
	return top
}

func linkOf(top gateway.Topology, from, to string) *gateway.TopologyLink {
	for i, l := range top.Links {
		if l.From == from && l.To == to {
			return &top.Links[i]
		}
	}
	return nil
}

const red = "#d7191c"

// TestTopologyPage: east's gateway serves the topology page; in Debian's
// chromium it draws both dev clusters, the link east -> west in green
// after traffic, and the link to a second west gateway (its own process).
// When that process is SIGKILLed, /topology.json reports the link down
// within 2 s (the page polls it every 500 ms) and the page draws it red.
func TestTopologyPage(t *testing.T) {
	bin := chromium(t)
	f, dataDir := startDev(t)
	child := startChildGateway(t, f.EtcdEndpoints(), dataDir)
	admin := f.Cluster("east").Gateway.AdminAddr().String()
	page := "http://" + admin + "/topology"
	t.Logf("topology page: %s", page)

	// Traffic east -> west until east holds a live connection to both
	// west gateways (the egress spreads streams over them).
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := client.Get("http://" + f.UpstreamAddr("east", "hello") + "/"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		top := fetchTopology(t, admin)
		l0, l1 := linkOf(top, "east/gw-0", "west/gw-0"), linkOf(top, "east/gw-0", "west/gw-1")
		if l0 != nil && l1 != nil && l0.Health == gateway.HealthOK && l1.Health == gateway.HealthOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("east/gw-0 has no live links to west/gw-0 and west/gw-1 after 60s: %+v", top.Links)
		}
		child.pause(t, 100*time.Millisecond)
	}

	dom := headless(t, bin, page, "--dump-dom")
	for _, c := range []string{"east", "west"} {
		if !strings.Contains(dom, `data-cluster="`+c+`"`) {
			t.Errorf("the page draws no cluster %s", c)
		}
	}
	for _, to := range []string{"west/gw-0", "west/gw-1"} {
		if h, s := renderedLink(dom, "east/gw-0", to); h != gateway.HealthOK || s == red {
			t.Errorf("link east/gw-0 -> %s drawn %q in %q, want ok and not red", to, h, s)
		}
	}
	if !strings.Contains(dom, `data-service="hello.default"`) {
		t.Errorf("the page lists no service hello.default")
	}
	dir := artifactDir(t)
	before := filepath.Join(dir, "topology-live.png")
	headless(t, bin, page, "--screenshot="+before)
	t.Logf("screenshot: %s", before)

	child.kill(t)
	killed := time.Now()
	for {
		l := linkOf(fetchTopology(t, admin), "east/gw-0", "west/gw-1")
		if l != nil && l.Health == gateway.HealthDown {
			break
		}
		if time.Since(killed) > 2*time.Second {
			t.Fatalf("the link east/gw-0 -> west/gw-1 is not down 2s after west/gw-1 was killed: %+v", l)
		}
		<-time.After(50 * time.Millisecond) // the poll's interval
	}
	t.Logf("link reported down %s after the kill", time.Since(killed).Round(time.Millisecond))
	dom = headless(t, bin, page, "--dump-dom")
	if h, s := renderedLink(dom, "east/gw-0", "west/gw-1"); h != gateway.HealthDown || s != red {
		t.Errorf("after the kill, link east/gw-0 -> west/gw-1 drawn %q in %q, want down in red", h, s)
	}
	if h, s := renderedLink(dom, "east/gw-0", "west/gw-0"); h != gateway.HealthOK || s == red {
		t.Errorf("after the kill, link east/gw-0 -> west/gw-0 drawn %q in %q, want ok", h, s)
	}
	after := filepath.Join(dir, "topology-west-gw-1-killed.png")
	headless(t, bin, page, "--screenshot="+after)
	t.Logf("screenshot: %s", after)
}
