package toolbin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// EnvDir names the environment variable holding a directory of prebuilt
// tools, used instead of building them.
const EnvDir = "STRAIT_E2E_TOOLS_BIN"

// ErrNoScript is returned when e2e/tools/build.sh cannot be found above the
// working directory.
var ErrNoScript = errors.New("toolbin: e2e/tools/build.sh not found above the working directory")

// Path returns the path of the named tool, building it if needed (the first
// build of etcd takes about a minute on 2 cores; later calls take a fraction
// of a second).
func Path(ctx context.Context, name string) (string, error) {
	if dir := os.Getenv(EnvDir); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("toolbin: %s: %w", EnvDir, err)
		}
		return p, nil
	}
	script, err := findScript()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, script, name)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("toolbin: %s %s: %w: %s", script, name, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return filepath.Join(strings.TrimSpace(string(out)), name), nil
}

// findScript walks up from the working directory to e2e/tools/build.sh.
func findScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("toolbin: %w", err)
	}
	for {
		p := filepath.Join(dir, "e2e", "tools", "build.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNoScript
		}
		dir = parent
	}
}
