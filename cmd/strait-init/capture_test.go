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

// buildBinaries builds strait-init and strait-proxy into one directory, as
// make image and deploy/Dockerfile build them (static, stripped;
// strait-proxy with tag grpcnotrace), and returns their paths.
func buildBinaries(t *testing.T) (initBin, proxyBin string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir := t.TempDir()
	for _, b := range []struct{ pkg, tags, out string }{
		{".", "", "strait-init"},
		{"../strait-proxy", "grpcnotrace", "strait-proxy"},
	} {
		build := exec.Command(goBin, "build", "-tags", b.tags, "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, b.out), b.pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return filepath.Join(dir, "strait-init"), filepath.Join(dir, "strait-proxy")
}

// TestInitCleanupBinary runs the strait-init binary as the image holds it
// in a network namespace of the test's, with an empty environment (no
// PATH: no iptables or nft command to find): init installs the capture
// table and prints it exactly as the nft command lists it; init again
// prints the same; cleanup leaves an empty ruleset, and cleanup again
// succeeds. The second init and the second cleanup go through
// `strait-proxy init|cleanup`, which executes strait-init beside it (pods
// that an older injector wrote run that command).
func TestInitCleanupBinary(t *testing.T) {
	needRoot(t)
	initBin, proxyBin := buildBinaries(t)
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
	for i, cmd := range [][]string{{initBin}, {proxyBin, "init"}} {
		out, err := in(append(cmd, "--exclude-gid", "1337")...)
		if err != nil {
			t.Fatalf("%q: %v\n%s", cmd, err, out)
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
			t.Logf("strait-init:\n%s", out)
		} else if out != first {
			t.Errorf("second init printed\n%s\nthe first\n%s", out, first)
		}
	}
	for _, cmd := range [][]string{{initBin, "cleanup"}, {proxyBin, "cleanup"}} {
		if out, err := in(cmd...); err != nil || out != "capture rules removed\n" {
			t.Fatalf("%q: %v: %q", cmd, err, out)
		}
		if nft := nftList(); strings.TrimSpace(nft) != "" {
			t.Errorf("ruleset after cleanup:\n%s", nft)
		}
	}
}

// strait-proxy init and cleanup execute the strait-init beside it with the
// same flags (here init's --no-capture --own-dir, which needs no root);
// without strait-init beside it they fail with a message that names it.
func TestProxyExecutesInit(t *testing.T) {
	initBin, proxyBin := buildBinaries(t)
	owner := fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
	alone := filepath.Join(t.TempDir(), "strait-proxy")
	if b, err := os.ReadFile(proxyBin); err != nil || os.WriteFile(alone, b, 0o755) != nil {
		t.Fatalf("copy strait-proxy: %v", err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr bool
		want    string // in the output
	}{
		{name: "init own-dir", args: []string{proxyBin, "init", "--no-capture", "--own-dir", "DIR", "--owner", owner},
			want: "DIR owned by " + owner + "\n"},
		{name: "init help", args: []string{proxyBin, "init", "--help"}, want: "Usage:\n  strait-init [flags]"},
		{name: "cleanup help", args: []string{proxyBin, "cleanup", "-h"}, want: "Usage:\n  strait-init cleanup [flags]"},
		{name: "init bad flag", args: []string{proxyBin, "init", "--exclude-port", "0"}, wantErr: true,
			want: "strait-init: --exclude-port 0 is not 1-65535"},
		{name: "direct", args: []string{initBin, "--no-capture", "--own-dir", "DIR", "--owner", owner},
			want: "DIR owned by " + owner + "\n"},
		{name: "no strait-init beside", args: []string{alone, "init", "--no-capture"}, wantErr: true,
			want: "strait-proxy: strait-proxy init: no strait-init binary beside this one (" + filepath.Join(filepath.Dir(alone), "strait-init") + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			args := make([]string, len(tc.args))
			for i, a := range tc.args {
				args[i] = strings.ReplaceAll(a, "DIR", dir)
			}
			out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
			if (err != nil) != tc.wantErr {
				t.Fatalf("%q: %v, want error %v\n%s", args, err, tc.wantErr, out)
			}
			if want := strings.ReplaceAll(tc.want, "DIR", dir); !strings.Contains(string(out), want) {
				t.Errorf("%q printed\n%s\nwant it to contain %q", args, out, want)
			}
			if strings.Contains(tc.want, "owned by") {
				if st, err := os.Stat(dir); err != nil || !st.IsDir() {
					t.Errorf("%s: %v", dir, err)
				}
			}
		})
	}
}
