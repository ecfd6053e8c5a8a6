// Command pause is the e2e Kubernetes nodes' pod sandbox image
// (registry.k8s.io/pause:3.10 there): it holds the pod's namespaces, sleeping
// until SIGTERM or SIGINT, and reaps the zombies it inherits when it is the
// pod's PID 1 (shared process namespace).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
