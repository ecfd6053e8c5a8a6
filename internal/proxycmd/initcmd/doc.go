// Package initcmd is the command of the proxy's init container, the
// strait-init binary: it installs the rules that capture a pod's outbound
// TCP and DNS (package proxy/capture/nft, over netlink) and hands
// directories to the proxy's user; `strait-init cleanup` removes the rules.
// `strait proxy init` and `strait proxy cleanup` run the same code, and
// `strait-proxy init|cleanup` executes strait-init beside it, so that the
// sidecar binary links no nftables or netlink code.
//
//	func main() {
//		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
//		defer stop()
//		if err := initcmd.Main(ctx, "strait-init", os.Args[1:], os.Stdout, os.Stderr); err != nil {
//			fmt.Fprintln(os.Stderr, "strait-init:", err)
//			os.Exit(1)
//		}
//	}
package initcmd
