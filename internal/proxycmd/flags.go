package proxycmd

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/strait-mesh/strait/internal/cmdutil"
)

// longHelp describes the proxy command in both of its forms.
const longHelp = `Run the per-workload proxy. Outbound, each upstream listener takes the
workload's connections to a global service: a healthy local endpoint is
dialed directly, otherwise the cluster's gateway carries the connection to
another cluster; the workload's mTLS session runs end to end to the
destination proxy. Inbound, the proxy terminates mTLS, checks the caller's
SPIFFE ID against the export's consumers, and hands the connection to the
application after a PROXY protocol v2 header that names the caller.

` + runtimeDefaultsHelp

// flags are the proxy command's flags (pflag, as cobra's commands use, so
// that `strait proxy` keeps the flags of the other commands' syntax without
// linking cobra into the strait-proxy binary).
type flags struct {
	path        string
	upstreams   []string
	pprof       bool
	transparent bool
	noMark      bool
}

func addFlags(fs *pflag.FlagSet) *flags {
	f := &flags{}
	fs.StringVarP(&f.path, "config", "c", "", "proxy config file (YAML or JSON) (required)")
	fs.BoolVar(&f.pprof, "pprof", false, "serve the Go profiles under /debug/pprof/ on the admin server")
	fs.StringArrayVar(&f.upstreams, "upstream", nil, "an upstream listener, <service>.<namespace>[.<cluster>]:<port>=<listen addr> (repeatable)")
	fs.BoolVar(&f.transparent, "transparent", false, "serve the captured connections and DNS (after strait-init installed the rules): the config file's transparent section, or its defaults when it has none")
	fs.BoolVar(&f.noMark, "no-mark", false, "with --transparent: do not SO_MARK the proxy's own connections (no CAP_NET_ADMIN); the rules exclude its group instead (init --exclude-gid)")
	return f
}

// file reads the config file and applies the flags over it.
func (fl *flags) file() (File, error) {
	var f File
	if fl.path == "" {
		return f, fmt.Errorf(`proxy: required flag "config" not set`)
	}
	if err := cmdutil.ReadFile(fl.path, &f); err != nil {
		return f, fmt.Errorf("proxy: %w", err)
	}
	f.Upstreams = append(f.Upstreams, fl.upstreams...)
	f.Pprof = f.Pprof || fl.pprof
	if fl.transparent && f.Transparent == nil {
		f.Transparent = &TransparentFile{}
	}
	if fl.noMark {
		if f.Transparent == nil {
			return f, fmt.Errorf("proxy: --no-mark without --transparent or a transparent section")
		}
		f.Transparent.NoMark = true
	}
	return f, nil
}
