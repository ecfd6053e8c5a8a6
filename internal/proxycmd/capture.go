package proxycmd

import (
	"context"
	"fmt"
	"io"
	"net/netip"

	"github.com/spf13/pflag"

	"github.com/strait-mesh/strait/proxy/capture"
)

const (
	initHelp = `Install the rules that capture a pod's outbound TCP and DNS: iptables nat
rules in the current network namespace (run it in the pod's) that redirect
outbound TCP to the proxy's transparent listener and DNS queries to its DNS
responder, except the proxy's own (marked) connections and loopback. Running
it again changes nothing. Needs CAP_NET_ADMIN.`
	cleanupHelp = "Remove the capture rules that init installed."
)

// captureFlags are the flags of the init and cleanup subcommands.
type captureFlags struct {
	cfg          capture.Config
	excludeCIDRs []string
	excludeUIDs  []uint
	excludePorts []uint
}

func addCaptureFlags(fs *pflag.FlagSet) *captureFlags {
	f := &captureFlags{}
	fs.Uint16Var(&f.cfg.OutboundPort, "outbound-port", capture.DefaultOutboundPort, "port of the proxy's transparent listener on 127.0.0.1")
	fs.Uint16Var(&f.cfg.DNSPort, "dns-port", capture.DefaultDNSPort, "port of the proxy's DNS responder on 127.0.0.1")
	fs.BoolVar(&f.cfg.NoDNS, "no-dns", false, "leave DNS queries alone")
	fs.Uint32Var(&f.cfg.Mark, "mark", capture.DefaultMark, "SO_MARK of the proxy's own connections, which are not captured")
	fs.UintSliceVar(&f.excludeUIDs, "exclude-uid", nil, "users whose traffic is not captured (the proxy's, when it runs as its own user)")
	fs.StringSliceVar(&f.excludeCIDRs, "exclude-cidr", nil, "destinations that are not captured, besides loopback (comma-separated CIDRs)")
	fs.UintSliceVar(&f.excludePorts, "exclude-port", nil, "TCP destination ports that are not captured")
	return f
}

func (f *captureFlags) config() (capture.Config, error) {
	cfg := f.cfg
	for _, u := range f.excludeUIDs {
		cfg.ExcludeUIDs = append(cfg.ExcludeUIDs, uint32(u))
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

// runInit installs the capture rules that f describes.
func runInit(ctx context.Context, f *captureFlags, out io.Writer) error {
	cfg, err := f.config()
	if err != nil {
		return err
	}
	if err := capture.Install(ctx, cfg); err != nil {
		return fmt.Errorf("proxy init: %w", err)
	}
	fmt.Fprintln(out, "capture rules installed")
	return nil
}

// runCleanup removes the capture rules that f describes.
func runCleanup(ctx context.Context, f *captureFlags, out io.Writer) error {
	cfg, err := f.config()
	if err != nil {
		return err
	}
	if err := capture.Cleanup(ctx, cfg); err != nil {
		return fmt.Errorf("proxy cleanup: %w", err)
	}
	fmt.Fprintln(out, "capture rules removed")
	return nil
}
