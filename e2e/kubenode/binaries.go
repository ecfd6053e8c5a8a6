package kubenode

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Binaries returns the directory holding the node's Kubernetes binaries and
// CoreDNS, building them with e2e/kubetools/build.sh when they are missing
// or stale (about 12 minutes of CPU when cold; a second when warm).
func Binaries(ctx context.Context) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, "e2e", "kubetools", "build.sh")
	cmd := exec.CommandContext(ctx, script, "node")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("kubenode: %s node: %w: %s", script, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return strings.TrimSpace(string(out)), nil
}

// repoRoot walks up from the working directory to the directory holding
// e2e/kubetools/build.sh.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("kubenode: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "e2e", "kubetools", "build.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNoScript
		}
		dir = parent
	}
}
