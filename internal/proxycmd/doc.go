// Package proxycmd is the per-workload proxy's command: its config file,
// its flags and its wiring (identity, etcd node, proxy, DNS responder, admin
// server), and the `init` and `cleanup` subcommands that install and remove
// the capture rules. `strait proxy` and the sidecar binary `strait-proxy`
// run this same command; the sidecar links nothing else, so that a pod
// carries no embedded etcd server, Kubernetes client or other commands.
//
//	func main() {
//		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
//		defer stop()
//		if err := proxycmd.New("strait-proxy").ExecuteContext(ctx); err != nil {
//			os.Exit(1)
//		}
//	}
package proxycmd
