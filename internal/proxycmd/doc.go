// Package proxycmd is the per-workload proxy's command: its config file,
// its flags and its wiring (identity, etcd node, proxy, DNS responder, admin
// server), and the `init` and `cleanup` subcommands that install and remove
// the capture rules. `strait proxy` and the sidecar binary `strait-proxy`
// run this same command. It links neither cobra nor anything of the other
// commands, so that the sidecar carries no embedded etcd server, Kubernetes
// client or QUIC stack.
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
