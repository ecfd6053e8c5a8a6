// Package proxycmd is the per-workload proxy's command: its config file,
// its flags and its wiring (identity, etcd node, proxy, DNS responder, admin
// server). `strait proxy` and the sidecar binary `strait-proxy` run this
// same command. It links neither cobra nor anything of the other commands,
// so that the sidecar carries no embedded etcd server, Kubernetes client or
// QUIC stack, nor the capture rules' nftables code: the `init` and
// `cleanup` subcommands, which install and remove those rules, are the
// init container's binary strait-init (package initcmd), which Main
// executes from the directory of the running binary.
//
//	func main() {
//		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
//		defer stop()
//		if err := proxycmd.Main(ctx, "strait-proxy", os.Args[1:], os.Stdout, os.Stderr); err != nil {
//			fmt.Fprintln(os.Stderr, "strait-proxy:", err)
//			os.Exit(1)
//		}
//	}
package proxycmd
