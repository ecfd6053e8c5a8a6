package main

import (
	"github.com/spf13/cobra"

	"github.com/strait-mesh/strait/internal/proxycmd"
)

// newProxyCmd is `strait proxy`, the same command as the strait-proxy
// binary (internal/proxycmd), which links nothing else.
func newProxyCmd() *cobra.Command { return proxycmd.New("strait proxy") }
