// Package kind holds the end-to-end suite on kind clusters (run.sh). It
// needs Docker and kind, so it does not run in `make test`; this package's
// test runs shellcheck on it (and on the other Kubernetes scripts) instead.
package kind

import (
	"os"
	"os/exec"
	"testing"
)

// TestShellcheck fails when shellcheck reports anything in the Kubernetes
// scripts. Without shellcheck it skips, or fails when CI=true.
func TestShellcheck(t *testing.T) {
	bin, err := exec.LookPath("shellcheck")
	if err != nil {
		msg := "shellcheck is not installed (Debian: apt-get install shellcheck)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	scripts := []string{"run.sh", "../kubetools/build.sh", "../../deploy/injector-tls.sh", "../../deploy/install.sh"}
	out, err := exec.Command(bin, append([]string{"--severity=info"}, scripts...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("shellcheck %v: %v\n%s", scripts, err, out)
	}
}
