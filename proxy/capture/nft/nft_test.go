package nft

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strait-mesh/strait/proxy/capture"
	"github.com/strait-mesh/strait/proxy/internal/netnstest"
)

// helperEnv makes the test binary a helper process (see TestMain): the
// tests run it under other credentials and capabilities.
const helperEnv = "STRAIT_CAPTURE_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		if err := helper(h, os.Args[len(os.Args)-1]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helper installs the rules of TestInstallCleanup ("install", arg unused)
// or dials arg and writes its local address ("dial").
func helper(what, arg string) error {
	switch what {
	case "install":
		return Install(context.Background(), capture.Config{})
	case "dial":
		c, err := net.DialTimeout("tcp", arg, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = fmt.Fprintln(c, c.LocalAddr())
		return err
	}
	return fmt.Errorf("unknown helper %q", what)
}

// runHelper runs the test binary as helper what under cred with the
// ambient capabilities caps.
func runHelper(t *testing.T, what, arg string, cred *syscall.Credential, caps ...uintptr) ([]byte, error) {
	t.Helper()
	bin := os.Args[0]
	if cred != nil && cred.Uid != 0 {
		bin = worldExecutable(t)
	}
	cmd := exec.Command(bin, "-test.run", "^$", arg)
	cmd.Env = append(os.Environ(), helperEnv+"="+what)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, AmbientCaps: caps}
	return cmd.CombinedOutput()
}

// worldExecutable is a copy of the test binary that other users may run
// (go test builds it in a directory only its owner may enter).
func worldExecutable(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "capture-helper-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	bin := dir + "/capture.test"
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestRules(t *testing.T) {
	tests := []struct {
		name string
		cfg  capture.Config
		want []string
	}{
		{"defaults", capture.Config{}, []string{
			"meta mark 0x00005354 return",
			"ip daddr 127.0.0.0/8 return",
			"udp dport 53 redirect to :15053",
			"tcp dport 53 redirect to :15053",
			"meta l4proto tcp redirect to :15001",
		}},
		{"every exclusion", capture.Config{OutboundPort: 9001, DNSPort: 9053, Mark: 0x10, ExcludeUIDs: []uint32{1337}, ExcludeGIDs: []uint32{1338, 0},
			ExcludeCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8"), netip.MustParsePrefix("192.0.2.7/32")}, ExcludePorts: []uint16{22}}, []string{
			"meta mark 0x00000010 return",
			"meta skuid 1337 return",
			"meta skgid 1338 return",
			"meta skgid 0 return",
			"ip daddr 127.0.0.0/8 return",
			"ip daddr 10.0.0.0/8 return",
			"ip daddr 192.0.2.7 return",
			"tcp dport 22 return",
			"udp dport 53 redirect to :9053",
			"tcp dport 53 redirect to :9053",
			"meta l4proto tcp redirect to :9001",
		}},
		{"no DNS", capture.Config{NoDNS: true}, []string{
			"meta mark 0x00005354 return",
			"ip daddr 127.0.0.0/8 return",
			"meta l4proto tcp redirect to :15001",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Rules(tt.cfg); !slices.Equal(got, tt.want) {
				t.Errorf("Rules() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			// The text is what render makes of the expressions.
			for _, r := range build(tt.cfg.WithDefaults()) {
				if got := render(r.exprs); got != r.text {
					t.Errorf("render(%s) = %s", r.text, got)
				}
			}
		})
	}
}

func TestInvalidConfig(t *testing.T) {
	for _, cfg := range []capture.Config{
		{ExcludeCIDRs: []netip.Prefix{netip.MustParsePrefix("fd00::/8")}},
		{ExcludeCIDRs: []netip.Prefix{{}}},
		{DNSPort: 15001},
		{ExcludePorts: []uint16{0}},
	} {
		if err := Install(context.Background(), cfg); !errors.Is(err, capture.ErrInvalidConfig) {
			t.Errorf("Install(%+v) = %v, want capture.ErrInvalidConfig", cfg, err)
		}
	}
}

// nftList is `nft list table ip strait`'s rule lines, or nil when the
// table is absent: the nft command's own reading of the kernel, beside
// List's.
func nftList(t *testing.T) []string {
	t.Helper()
	out := nftTable(t)
	if out == "" {
		return nil
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "table ") || strings.HasPrefix(l, "chain ") || l == "}" || strings.HasPrefix(l, "type ") {
			continue
		}
		lines = append(lines, l)
	}
	return lines
}

// nftTable is `nft -y list table ip strait` (numeric priority, numeric
// user and group IDs), or "" when the table is absent.
func nftTable(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("nft", "-y", "--guid", "list", "table", "ip", capture.Table).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "No such file or directory") {
			return ""
		}
		t.Fatalf("nft list table: %v: %s", err, out)
	}
	return string(out)
}

// accept accepts one connection on ln within a deadline.
func accept(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept on %s: %v", ln.Addr(), err)
	}
	return c
}

// TestInstallCleanup, in a network namespace of its own: Install twice
// leaves one table whose rules the kernel gives back as Rules says (read
// by List and by the nft command); a TCP connection to a non-loopback
// address reaches the redirect port with its original destination readable
// (SO_ORIGINAL_DST after an nft redirect); a connection marked with the
// proxy's SO_MARK, or made by an excluded group, goes where it was going;
// Cleanup twice leaves no table.
func TestInstallCleanup(t *testing.T) {
	if !netnstest.Run(t, netnstest.Options{Setup: []string{
		"route add default dev lo", "addr add 10.99.0.1/32 dev lo",
	}}) {
		return
	}
	netnstest.RequireCommand(t, "nft")
	ctx := context.Background()
	redirect, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer redirect.Close()
	port := uint16(redirect.Addr().(*net.TCPAddr).Port)
	const excludedGID = 4242
	cfg := capture.Config{OutboundPort: port, ExcludeGIDs: []uint32{excludedGID}}

	if ok, err := Installed(ctx, cfg); err != nil || ok {
		t.Fatalf("Installed() before Install = %v, %v", ok, err)
	}
	for range 2 {
		if err := Install(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	want := Rules(cfg)
	if got, err := List(ctx); err != nil || !slices.Equal(got, want) {
		t.Errorf("List() = %v, %v; want\n%s", strings.Join(got, "\n"), err, strings.Join(want, "\n"))
	}
	if got := nftList(t); !slices.Equal(got, want) {
		t.Errorf("nft lists\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	rs, err := Ruleset(ctx)
	if nft := nftTable(t); err != nil || rs != nft || !strings.Contains(rs, "type nat hook output priority -100; policy accept;") {
		t.Errorf("Ruleset() = %v\n%s\nnft lists\n%s", err, rs, nft)
	}
	t.Logf("Ruleset():\n%s", rs)
	if ok, err := Installed(ctx, cfg); err != nil || !ok {
		t.Errorf("Installed() = %v, %v", ok, err)
	}

	// A captured connection.
	c, err := net.DialTimeout("tcp", "240.240.1.2:9000", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := accept(t, redirect)
	defer a.Close()
	dst, err := capture.OriginalDst(a)
	if err != nil || dst != netip.MustParseAddrPort("240.240.1.2:9000") {
		t.Errorf("capture.OriginalDst() = %v, %v; want 240.240.1.2:9000", dst, err)
	}

	// A marked connection goes where it was going.
	direct, err := net.Listen("tcp", "10.99.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	d := net.Dialer{Timeout: 3 * time.Second, Control: capture.DialerControl(capture.DefaultMark)}
	mc, err := d.Dial("tcp", direct.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	ac := accept(t, direct)
	defer ac.Close()
	if _, err := capture.OriginalDst(ac); !errors.Is(err, capture.ErrNotRedirected) {
		t.Errorf("capture.OriginalDst of a direct connection = %v, want capture.ErrNotRedirected", err)
	}
	// The same connection without the mark is captured.
	uc, err := net.DialTimeout("tcp", direct.Addr().String(), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	accept(t, redirect).Close()

	// A process of the excluded group is not captured; one of another
	// group is.
	for _, tt := range []struct {
		gid      uint32
		captured bool
	}{{excludedGID, false}, {excludedGID + 1, true}} {
		out, err := runHelper(t, "dial", direct.Addr().String(), &syscall.Credential{Uid: 0, Gid: tt.gid})
		if err != nil {
			t.Fatalf("dial as group %d: %v: %s", tt.gid, err, out)
		}
		ln := direct
		if tt.captured {
			ln = redirect
		}
		accept(t, ln).Close()
	}

	for range 2 {
		if err := Cleanup(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := List(ctx); err != nil || got != nil {
		t.Errorf("List() after Cleanup = %v, %v; want nothing", got, err)
	}
	if got := nftList(t); got != nil {
		t.Errorf("nft lists after Cleanup:\n%s", strings.Join(got, "\n"))
	}
	if out, err := exec.Command("nft", "list", "ruleset").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("ruleset after Cleanup: %v\n%s", err, out)
	}
	if ok, err := Installed(ctx, cfg); err != nil || ok {
		t.Errorf("Installed() after Cleanup = %v, %v", ok, err)
	}
	// Installed again after Cleanup, the rules work again.
	if err := Install(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	rc, err := net.DialTimeout("tcp", "240.240.1.3:9000", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ra := accept(t, redirect)
	defer ra.Close()
	if dst, err := capture.OriginalDst(ra); err != nil || dst != netip.MustParseAddrPort("240.240.1.3:9000") {
		t.Errorf("capture.OriginalDst() after reinstall = %v, %v", dst, err)
	}
	if err := Cleanup(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// TestInstallCapabilities: Install needs CAP_NET_ADMIN and nothing else
// (no CAP_NET_RAW, no root), the one capability the injector gives the
// init container for the rules: a non-root process with only
// CAP_NET_ADMIN installs them; without it Install fails with EPERM.
func TestInstallCapabilities(t *testing.T) {
	if !netnstest.Run(t, netnstest.Options{}) {
		return
	}
	ctx := context.Background()
	nonRoot := &syscall.Credential{Uid: 65532, Gid: 65532}
	out, err := runHelper(t, "install", "", nonRoot)
	if err == nil || !strings.Contains(string(out), "operation not permitted") {
		t.Errorf("Install without CAP_NET_ADMIN: %v: %s; want operation not permitted", err, out)
	}
	if ok, err := Installed(ctx, capture.Config{}); err != nil || ok {
		t.Fatalf("Installed() after a refused Install = %v, %v", ok, err)
	}
	if out, err := runHelper(t, "install", "", nonRoot, unix.CAP_NET_ADMIN); err != nil {
		t.Fatalf("Install with CAP_NET_ADMIN only: %v: %s", err, out)
	}
	if got, err := List(ctx); err != nil || !slices.Equal(got, Rules(capture.Config{})) {
		t.Errorf("List() = %v, %v; want %v", got, err, Rules(capture.Config{}))
	}
	if err := Cleanup(ctx, capture.Config{}); err != nil {
		t.Fatal(err)
	}
}
