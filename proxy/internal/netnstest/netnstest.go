// Package netnstest runs a test inside a network namespace of its own, as
// root: the test binary re-executes itself under `ip netns exec`, so that
// every socket of the test, and every command it runs, lives in the
// namespace. Tests that cannot run (not root, no iproute2) skip, except
// when CI=true, where they fail.
//
//	func TestCapture(t *testing.T) {
//		if !netnstest.Run(t, netnstest.Options{}) {
//			return // the parent: the child ran the test
//		}
//		// here: inside the namespace
//	}
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// envName is set in the child to the namespace it runs in.
const envName = "STRAIT_NETNSTEST_NS"

// Options prepare the namespace.
type Options struct {
	// Setup are iproute2 commands run in the namespace before the test
	// ("route add 240.240.0.0/16 dev lo"). Loopback is always brought up.
	Setup []string
	// ResolvConf, when set, is the namespace's /etc/resolv.conf (ip netns
	// exec bind-mounts /etc/netns/<name>/resolv.conf).
	ResolvConf string
}

var seq atomic.Int64

// Name is the namespace the test runs in, or "" outside one.
func Name() string { return os.Getenv(envName) }

// Run returns true when called in the child, inside the namespace: the
// caller then runs the test body. In the parent it creates the namespace,
// runs the test again inside it, reports the child's output, and returns
// false.
func Run(t *testing.T, opts Options) bool {
	t.Helper()
	if Name() != "" {
		return true
	}
	Require(t)
	name := fmt.Sprintf("strait-pt-%d-%d", os.Getpid(), seq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		unavailable(t, fmt.Sprintf("ip netns add: %v: %s", err, out))
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", name).Run()
		_ = os.RemoveAll(filepath.Join("/etc/netns", name))
	})
	setup := append([]string{"link set lo up"}, opts.Setup...)
	for _, s := range setup {
		args := append([]string{"-n", name}, strings.Fields(s)...)
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if opts.ResolvConf != "" {
		dir := filepath.Join("/etc/netns", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(opts.ResolvConf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"netns", "exec", name, os.Args[0], "-test.run", "^" + t.Name() + "$", "-test.count=1", "-test.v"}
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), envName+"="+name)
	out, err := cmd.CombinedOutput()
	t.Logf("in namespace %s:\n%s", name, out)
	if err != nil {
		t.Fatalf("test in namespace %s failed: %v", name, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("test did not run in namespace %s", name)
	}
	return false
}

// Require skips (or, under CI=true, fails) a test that needs root and
// iproute2 when they are missing.
func Require(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		unavailable(t, "needs iproute2")
	}
}

// RequireCommand is Require for another command (iptables, curl).
func RequireCommand(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		unavailable(t, "needs "+name)
	}
}

func unavailable(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run under CI: %s", why)
	}
	t.Skip(why)
}
