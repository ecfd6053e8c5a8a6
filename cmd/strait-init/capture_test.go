package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// needRoot skips a test that needs root, iproute2 and nft, or fails it
// under CI=true.
func needRoot(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root"
	}
	for _, c := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(c); err != nil && why == "" {
			why = "needs " + c
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run under CI: %s", why)
	}
	t.Skip(why)
}

// TestInitCleanupBinary runs the strait-proxy binary as the image holds it
// (built as deploy/Dockerfile builds it) in a network namespace of the
// test's, with an empty environment (no PATH: no iptables or nft command
// to find): init installs the capture table and prints it exactly as the
// nft command lists it; init again prints the same; cleanup leaves an
// empty ruleset, and cleanup again succeeds.
func TestInitCleanupBinary(t *testing.T) {
	needRoot(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "strait-proxy")
	build := exec.Command(goBin, "build", "-tags", "grpcnotrace", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ns := fmt.Sprintf("strait-cap-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	// in runs a command in the namespace with an empty environment.
	in := func(args ...string) (string, error) {
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
		cmd.Env = []string{}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	nftList := func() string {
		out, err := in("/usr/sbin/nft", "-y", "--guid", "list", "ruleset")
		if err != nil {
			t.Fatalf("nft list ruleset: %v: %s", err, out)
		}
		return out
	}

	var first string
	for i := range 2 {
		out, err := in(bin, "init", "--exclude-gid", "1337")
		if err != nil {
			t.Fatalf("strait-proxy init: %v\n%s", err, out)
		}
		table, ok := strings.CutPrefix(out, "capture rules installed:\n")
		if !ok {
			t.Fatalf("init printed %q", out)
		}
		for _, want := range []string{"meta skgid 1337 return", "udp dport 53 redirect to :15053", "meta l4proto tcp redirect to :15001"} {
			if !strings.Contains(table, want) {
				t.Errorf("init printed no %q:\n%s", want, table)
			}
		}
		if nft := nftList(); nft != table {
			t.Errorf("init printed\n%s\nnft lists\n%s", table, nft)
		}
		if i == 0 {
			first = out
			t.Logf("strait-proxy init:\n%s", out)
		} else if out != first {
			t.Errorf("second init printed\n%s\nthe first\n%s", out, first)
		}
	}
	for range 2 {
		if out, err := in(bin, "cleanup"); err != nil || out != "capture rules removed\n" {
			t.Fatalf("strait-proxy cleanup: %v: %q", err, out)
		}
		if nft := nftList(); strings.TrimSpace(nft) != "" {
			t.Errorf("ruleset after cleanup:\n%s", nft)
		}
	}
}
