package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// readTar returns the regular files of a tar stream by name.
func readTar(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[hdr.Name] = b
	}
}

func blob(t *testing.T, files map[string][]byte, h v1.Hash) []byte {
	t.Helper()
	b, ok := files["blobs/"+h.Algorithm+"/"+h.Hex]
	if !ok {
		t.Fatalf("blob %s missing", h)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != h.Hex {
		t.Fatalf("blob %s has digest %s", h, got)
	}
	return b
}

// TestWriteFile writes an image and reads it back as an OCI layout: the index
// names the image, every blob matches its digest, the config carries the
// entrypoint and user, and the layer holds the files with their modes.
func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "prog")
	if err := os.WriteFile(src, []byte("#!binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "img.tar")
	err := WriteFile(out, Spec{
		Ref: "strait:dev",
		Files: []File{
			{Path: "/usr/local/bin/strait", Source: src},
			{Path: "/etc/strait/config.yaml", Data: []byte("a: 1\n"), UID: 65532},
		},
		Entrypoint: []string{"/usr/local/bin/strait"},
		User:       "65532:65532",
	})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(out); err != nil {
		t.Fatal(err)
	} else if st.Mode().Perm() != 0o644 {
		t.Errorf("image file mode %v, want 0644", st.Mode().Perm())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := readTar(t, f)
	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %q", files["oci-layout"])
	}
	var index v1.IndexManifest
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 {
		t.Fatalf("index has %d manifests", len(index.Manifests))
	}
	desc := index.Manifests[0]
	if got := desc.Annotations[AnnotationContainerdName]; got != "docker.io/library/strait:dev" {
		t.Errorf("containerd name %q", got)
	}
	if got := desc.Annotations[AnnotationRefName]; got != "dev" {
		t.Errorf("ref name %q", got)
	}
	var manifest v1.Manifest
	if err := json.Unmarshal(blob(t, files, desc.Digest), &manifest); err != nil {
		t.Fatal(err)
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(blob(t, files, manifest.Config.Digest), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" || len(cfg.Config.Entrypoint) != 1 || cfg.OS != "linux" {
		t.Errorf("config %+v", cfg.Config)
	}
	if len(manifest.Layers) != 1 || len(cfg.RootFS.DiffIDs) != 1 {
		t.Fatalf("%d layers, %d diff IDs", len(manifest.Layers), len(cfg.RootFS.DiffIDs))
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob(t, files, manifest.Layers[0].Digest)))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	diff := sha256.Sum256(raw)
	if hex.EncodeToString(diff[:]) != cfg.RootFS.DiffIDs[0].Hex {
		t.Error("layer diff ID does not match the uncompressed layer")
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	modes := map[string]int64{}
	uids := map[string]int{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		modes[hdr.Name] = hdr.Mode
		uids[hdr.Name] = hdr.Uid
	}
	want := map[string]int64{"usr/": 0o755, "usr/local/": 0o755, "usr/local/bin/": 0o755, "usr/local/bin/strait": 0o755,
		"etc/": 0o755, "etc/strait/": 0o755, "etc/strait/config.yaml": 0o644}
	for name, mode := range want {
		if got, ok := modes[name]; !ok || got != mode {
			t.Errorf("layer entry %s: mode %o (present %v), want %o", name, got, ok, mode)
		}
	}
	if uids["etc/strait/config.yaml"] != 65532 {
		t.Errorf("config file owned by %d", uids["etc/strait/config.yaml"])
	}

	// The same inputs give the same image.
	again := filepath.Join(dir, "again.tar")
	if err := os.Rename(out, again); err != nil {
		t.Fatal(err)
	}
	_ = WriteFile(out, Spec{Ref: "strait:dev", Files: []File{{Path: "/usr/local/bin/strait", Source: src},
		{Path: "/etc/strait/config.yaml", Data: []byte("a: 1\n"), UID: 65532}},
		Entrypoint: []string{"/usr/local/bin/strait"}, User: "65532:65532"})
	a, _ := os.ReadFile(again)
	b, _ := os.ReadFile(out)
	if !bytes.Equal(a, b) {
		t.Error("two writes of the same spec differ")
	}
}

func TestSpecValidation(t *testing.T) {
	ok := File{Path: "/a", Data: []byte("x")}
	tests := []struct {
		name string
		spec Spec
	}{
		{"no tag", Spec{Ref: "strait", Files: []File{ok}, Entrypoint: []string{"/a"}}},
		{"bad ref", Spec{Ref: "Strait:Dev!", Files: []File{ok}, Entrypoint: []string{"/a"}}},
		{"no files", Spec{Ref: "strait:dev", Entrypoint: []string{"/a"}}},
		{"relative path", Spec{Ref: "strait:dev", Files: []File{{Path: "a", Data: []byte("x")}}, Entrypoint: []string{"/a"}}},
		{"unclean path", Spec{Ref: "strait:dev", Files: []File{{Path: "/b/../a", Data: []byte("x")}}, Entrypoint: []string{"/a"}}},
		{"duplicate", Spec{Ref: "strait:dev", Files: []File{ok, ok}, Entrypoint: []string{"/a"}}},
		{"no content", Spec{Ref: "strait:dev", Files: []File{{Path: "/a"}}, Entrypoint: []string{"/a"}}},
		{"two contents", Spec{Ref: "strait:dev", Files: []File{{Path: "/a", Data: []byte("x"), Source: "/etc/hostname"}}, Entrypoint: []string{"/a"}}},
		{"no entrypoint", Spec{Ref: "strait:dev", Files: []File{ok}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := Build(tt.spec); !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("Build: %v, want ErrInvalidSpec", err)
			}
		})
	}
}
