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

// GoImage is an image of one static Go program of this module.
type GoImage struct {
	// Package is the main package, relative to the repository root, e.g.
	// "./e2e/kubenode/cmd/kubeapp".
	Package string
	// Ref names the image, with a tag.
	Ref string
	// User runs the program, "uid:gid". Zero means root.
	User string
}

// BuildGoImage builds img.Package as a static Linux binary and writes the
// image, with the binary at /<base name of the package> as its entrypoint,
// into dir. It returns the tarball's path.
func BuildGoImage(ctx context.Context, dir string, img GoImage) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	name := filepath.Base(img.Package)
	bin := filepath.Join(dir, name+".bin")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, img.Package)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kubenode: go build %s: %w: %s", img.Package, err, bytes.TrimSpace(stderr.Bytes()))
	}
	defer os.Remove(bin)
	return writeImage(dir, name, ociimage.Spec{
		Ref:        img.Ref,
		Files:      []ociimage.File{{Path: "/" + name, Source: bin, Mode: 0o755}},
		Entrypoint: []string{"/" + name},
		User:       img.User,
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
	pause, err := BuildGoImage(ctx, dir, GoImage{Package: "./e2e/kubenode/cmd/pause", Ref: PauseImage, User: "65535:65535"})
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
