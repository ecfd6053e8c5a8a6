package kubenode

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/strait-mesh/strait/internal/ociimage"
)

// Images every node imports before its kubelet starts.
const (
	// PauseImage is containerd's sandbox image: e2e/kubenode/cmd/pause
	// under the name the kubelet and containerd expect, so nothing is
	// ever pulled.
	PauseImage = "registry.k8s.io/pause:3.10"
	// CoreDNSImage is the coredns binary of e2e/kubetools.
	CoreDNSImage = "strait.test/kubenode/coredns:v1"
)

// BuildGoImage builds the main package pkg (an import path of this module,
// e.g. "./e2e/kubenode/cmd/pause", relative to the repository root) as a
// static Linux binary and writes it as the image ref, with the binary at
// /<base name of pkg> as entrypoint, into dir. It returns the tarball's path.
func BuildGoImage(ctx context.Context, dir, pkg, ref string, user string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	name := filepath.Base(pkg)
	bin := filepath.Join(dir, name+".bin")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kubenode: go build %s: %w: %s", pkg, err, bytes.TrimSpace(stderr.Bytes()))
	}
	defer os.Remove(bin)
	return writeImage(dir, name, ociimage.Spec{
		Ref:        ref,
		Files:      []ociimage.File{{Path: "/" + name, Source: bin, Mode: 0o755}},
		Entrypoint: []string{"/" + name},
		User:       user,
	})
}

// writeImage writes spec to <dir>/<name>.tar.
func writeImage(dir, name string, spec ociimage.Spec) (string, error) {
	path := filepath.Join(dir, name+".tar")
	if err := ociimage.WriteFile(path, spec); err != nil {
		return "", fmt.Errorf("kubenode: image %s: %w", spec.Ref, err)
	}
	return path, nil
}

// baseImages writes the pause and CoreDNS images into dir.
func baseImages(ctx context.Context, dir, binDir string) ([]string, error) {
	pause, err := BuildGoImage(ctx, dir, "./e2e/kubenode/cmd/pause", PauseImage, "65535:65535")
	if err != nil {
		return nil, err
	}
	coredns, err := writeImage(dir, "coredns", ociimage.Spec{
		Ref:        CoreDNSImage,
		Files:      []ociimage.File{{Path: "/coredns", Source: filepath.Join(binDir, "coredns"), Mode: 0o755}},
		Entrypoint: []string{"/coredns"},
	})
	if err != nil {
		return nil, err
	}
	return []string{pause, coredns}, nil
}

// ImportImage imports an image tarball into the node's containerd, where
// the kubelet finds it (the k8s.io namespace).
func (n *Node) ImportImage(ctx context.Context, tarball string) error {
	cmd := exec.CommandContext(ctx, "ctr", "--address", n.paths.socket, "--namespace", "k8s.io", "images", "import", tarball)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubenode: %s: import %s: %w: %s", n.cfg.Name, tarball, err, bytes.TrimSpace(out))
	}
	return nil
}
