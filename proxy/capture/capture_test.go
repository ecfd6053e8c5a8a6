package capture

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/internal/netnstest"
)

func TestRules(t *testing.T) {
	rules := Rules(Config{ExcludeUIDs: []uint32{1337}, ExcludeCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, ExcludePorts: []uint16{22}})
	var lines []string
	for _, r := range rules {
		lines = append(lines, strings.Join(r, " "))
	}
	want := []string{
		"-m mark --mark 0x5354 -j RETURN",
		"-m owner --uid-owner 1337 -j RETURN",
		"-d 127.0.0.0/8 -j RETURN",
		"-d 10.0.0.0/8 -j RETURN",
		"-p tcp --dport 22 -j RETURN",
		"-p udp --dport 53 -j REDIRECT --to-ports 15053",
		"-p tcp --dport 53 -j REDIRECT --to-ports 15053",
		"-p udp -j RETURN",
		"-p tcp -j REDIRECT --to-ports 15001",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("Rules() =\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	noDNS := Rules(Config{NoDNS: true})
	for _, r := range noDNS {
		if slices.Contains(r, "53") {
			t.Errorf("NoDNS rules redirect DNS: %v", r)
		}
	}
}

func natRules(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("iptables", "-w", "-t", "nat", "-S").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables -t nat -S: %v: %s", err, out)
	}
	return string(out)
}

// TestInstallCleanup: Install twice leaves one copy of the rules; a TCP
// connection to a non-loopback address reaches the redirect port with its
// original destination readable; a marked connection is not captured;
// Cleanup twice leaves nothing.
func TestInstallCleanup(t *testing.T) {
	if !netnstest.Run(t, netnstest.Options{Setup: []string{
		"route add default dev lo", "addr add 10.99.0.1/32 dev lo",
	}}) {
		return
	}
	netnstest.RequireCommand(t, "iptables")
	ctx := context.Background()
	redirect, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer redirect.Close()
	port := uint16(redirect.Addr().(*net.TCPAddr).Port)
	cfg := Config{OutboundPort: port}

	for range 2 {
		if err := Install(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	rules := natRules(t)
	if n := strings.Count(rules, "-A OUTPUT -p tcp -j "+Chain); n != 1 {
		t.Errorf("%d TCP jumps after two installs:\n%s", n, rules)
	}
	if n := strings.Count(rules, "-A "+Chain+" "); n != len(Rules(cfg)) {
		t.Errorf("%d rules in the chain, want %d:\n%s", n, len(Rules(cfg)), rules)
	}
	if ok, err := Installed(ctx, cfg); err != nil || !ok {
		t.Errorf("Installed() = %v, %v", ok, err)
	}

	// A captured connection.
	c, err := net.DialTimeout("tcp", "240.240.1.2:9000", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := redirect.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	dst, err := OriginalDst(a)
	if err != nil || dst != netip.MustParseAddrPort("240.240.1.2:9000") {
		t.Errorf("OriginalDst() = %v, %v; want 240.240.1.2:9000", dst, err)
	}

	// A marked connection goes where it was going.
	direct, err := net.Listen("tcp", "10.99.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	d := net.Dialer{Timeout: 3 * time.Second, Control: DialerControl(DefaultMark)}
	mc, err := d.Dial("tcp", direct.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	ac, err := direct.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	if _, err := OriginalDst(ac); !errors.Is(err, ErrNotRedirected) {
		t.Errorf("OriginalDst of a direct connection = %v, want ErrNotRedirected", err)
	}
	// The same connection without the mark is captured.
	uc, err := net.DialTimeout("tcp", direct.Addr().String(), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	ra, err := redirect.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ra.Close()

	for range 2 {
		if err := Cleanup(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if rules := natRules(t); strings.Contains(rules, "STRAIT") {
		t.Errorf("rules left after Cleanup:\n%s", rules)
	}
}
