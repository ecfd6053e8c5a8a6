// Command coredns is CoreDNS with only the plugins the e2e Kubernetes nodes
// use (cluster DNS for Services, forwarding, caching, health and readiness),
// built from the release pinned in this module's go.mod by ../build.sh.
//
// CoreDNS chooses its plugins at compile time: its own main imports every
// plugin and orders them by the generated dnsserver.Directives. This main
// imports a few and sets Directives to the same relative order (CoreDNS's
// plugin.cfg), which keeps the binary and its dependency set small.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/rewrite"
	_ "github.com/coredns/coredns/plugin/template"
	_ "github.com/coredns/coredns/plugin/whoami"
)

// directives is CoreDNS's plugin.cfg order restricted to the plugins above.
var directives = []string{
	"reload",
	"ready",
	"health",
	"errors",
	"log",
	"loadbalance",
	"rewrite",
	"cache",
	"template",
	"kubernetes",
	"loop",
	"forward",
	"whoami",
}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
