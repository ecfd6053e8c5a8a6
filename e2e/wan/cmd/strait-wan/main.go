// Command strait-wan runs one WAN emulator link (see package
// github.com/strait-mesh/strait/e2e/wan), for instance inside a network
// namespace with `ip netns exec`. SIGUSR1 partitions the link, SIGUSR2 heals
// it, and -control serves the HTTP control API.
package main

import (
	"os"

	"github.com/strait-mesh/strait/e2e/wan"
)

func main() {
	os.Exit(wan.Main(os.Args[1:], os.Stderr))
}
