package initcmd

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/strait-mesh/strait/proxy/capture"
	"github.com/strait-mesh/strait/proxy/capture/nft"
)

const (
	initHelp = `Install the rules that capture a pod's outbound TCP and DNS: an nftables
table (ip strait) in the current network namespace (run it in the pod's)
that redirects outbound TCP to the proxy's transparent listener and DNS
queries to its DNS responder, except the proxy's own connections (marked,
or of an excluded user or group) and loopback. It programs the kernel over
netlink, with no iptables or nft command, and needs CAP_NET_ADMIN only.
Running it again replaces the table whole; it prints the rules the kernel
holds afterwards.

With --own-dir it also hands directories to the proxy's user (--owner), as
the hostPath directory of the built-in CA, which the kubelet creates owned
by root, needs (CAP_CHOWN); --no-capture then skips the rules.

It is a binary of its own (strait-init, beside strait-proxy in Strait's
image) so that the sidecar, which runs for the pod's whole life, carries
none of this code.`
	cleanupHelp = "Remove the capture rules that init installed (the nftables table ip strait); nothing to remove is no error."
)

// captureFlags are the flags of the init and cleanup subcommands.
type captureFlags struct {
	cfg          capture.Config
	excludeCIDRs []string
	excludeUIDs  []uint
	excludeGIDs  []uint
	excludePorts []uint
	// init only
	noCapture bool
	ownDirs   []string
	owner     string
}

func addCaptureFlags(fs *pflag.FlagSet) *captureFlags {
	f := &captureFlags{}
	fs.Uint16Var(&f.cfg.OutboundPort, "outbound-port", capture.DefaultOutboundPort, "port of the proxy's transparent listener on 127.0.0.1")
	fs.Uint16Var(&f.cfg.DNSPort, "dns-port", capture.DefaultDNSPort, "port of the proxy's DNS responder on 127.0.0.1")
	fs.BoolVar(&f.cfg.NoDNS, "no-dns", false, "leave DNS queries alone")
	fs.Uint32Var(&f.cfg.Mark, "mark", capture.DefaultMark, "SO_MARK of the proxy's own connections, which are not captured")
	fs.UintSliceVar(&f.excludeUIDs, "exclude-uid", nil, "users whose traffic is not captured (the proxy's, when it runs as its own user)")
	fs.UintSliceVar(&f.excludeGIDs, "exclude-gid", nil, "groups whose traffic is not captured (the proxy's, when it cannot mark its connections, as in an injected pod)")
	fs.StringSliceVar(&f.excludeCIDRs, "exclude-cidr", nil, "destinations that are not captured, besides loopback (comma-separated CIDRs)")
	fs.UintSliceVar(&f.excludePorts, "exclude-port", nil, "TCP destination ports that are not captured")
	return f
}

// addInitFlags adds the flags that only init has.
func addInitFlags(fs *pflag.FlagSet, f *captureFlags) {
	fs.BoolVar(&f.noCapture, "no-capture", false, "install no capture rules (with --own-dir: only prepare the directories)")
	fs.StringSliceVar(&f.ownDirs, "own-dir", nil, "directories to hand to --owner (comma-separated or repeated), e.g. the built-in CA's hostPath")
	fs.StringVar(&f.owner, "owner", "65532:65532", "user:group that --own-dir directories get (numeric)")
}

// parseOwner parses a numeric "uid:gid".
func parseOwner(s string) (uid, gid int, err error) {
	u, g, ok := strings.Cut(s, ":")
	if ok {
		uid, err = strconv.Atoi(u)
		if err == nil {
			gid, err = strconv.Atoi(g)
		}
	}
	if !ok || err != nil || uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("--owner %q: want numeric user:group such as 65532:65532", s)
	}
	return uid, gid, nil
}

// ownDirs hands each directory to uid:gid, creating it when missing.
func ownDirs(dirs []string, uid, gid int, out io.Writer) error {
	for _, d := range dirs {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("init: --own-dir %q is not absolute", d)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("init: %w", err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			return fmt.Errorf("init: %w", err)
		}
		fmt.Fprintf(out, "%s owned by %d:%d\n", d, uid, gid)
	}
	return nil
}

func (f *captureFlags) config() (capture.Config, error) {
	cfg := f.cfg
	for _, u := range f.excludeUIDs {
		if u > 1<<32-1 {
			return cfg, fmt.Errorf("--exclude-uid %d is not a 32-bit ID", u)
		}
		cfg.ExcludeUIDs = append(cfg.ExcludeUIDs, uint32(u))
	}
	for _, g := range f.excludeGIDs {
		if g > 1<<32-1 {
			return cfg, fmt.Errorf("--exclude-gid %d is not a 32-bit ID", g)
		}
		cfg.ExcludeGIDs = append(cfg.ExcludeGIDs, uint32(g))
	}
	for _, p := range f.excludePorts {
		if p == 0 || p > 65535 {
			return cfg, fmt.Errorf("--exclude-port %d is not 1-65535", p)
		}
		cfg.ExcludePorts = append(cfg.ExcludePorts, uint16(p))
	}
	for _, s := range f.excludeCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return cfg, fmt.Errorf("--exclude-cidr %q: %w", s, err)
		}
		cfg.ExcludeCIDRs = append(cfg.ExcludeCIDRs, p)
	}
	return cfg, nil
}

// runInit hands the --own-dir directories to their owner and installs the
// capture rules that f describes.
func runInit(ctx context.Context, f *captureFlags, out io.Writer) error {
	cfg, err := f.config()
	if err != nil {
		return err
	}
	uid, gid, err := parseOwner(f.owner)
	if err != nil {
		return err
	}
	if err := ownDirs(f.ownDirs, uid, gid, out); err != nil {
		return err
	}
	if f.noCapture {
		return nil
	}
	if err := nft.Install(ctx, cfg); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	rules, err := nft.Ruleset(ctx)
	if err != nil {
		return fmt.Errorf("init: rules installed, but reading them back: %w", err)
	}
	fmt.Fprintf(out, "capture rules installed:\n%s", rules)
	return nil
}

// runCleanup removes the capture rules that f describes.
func runCleanup(ctx context.Context, f *captureFlags, out io.Writer) error {
	cfg, err := f.config()
	if err != nil {
		return err
	}
	if err := nft.Cleanup(ctx, cfg); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	fmt.Fprintln(out, "capture rules removed")
	return nil
}
