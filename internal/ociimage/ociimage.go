package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/hashicorp/go-multierror"
)

// Annotations of the image's entry in index.json. containerd names an
// imported image by the first, Docker and other OCI tools by the second.
const (
	AnnotationContainerdName = "io.containerd.image.name"
	AnnotationRefName        = "org.opencontainers.image.ref.name"
)

// epoch is every file's and the image's creation time, so that the same
// inputs give the same digests.
var epoch = time.Unix(0, 0).UTC()

// File is one regular file of the image's layer.
type File struct {
	// Path is the absolute path inside the image. Parent directories are
	// created (mode 0755, owned by root).
	Path string
	// Source is a file on disk to copy. Exactly one of Source and Data is
	// set.
	Source string
	// Data is the file's content.
	Data []byte
	// Mode is the permission bits. Zero means 0644 (0755 for a Source that
	// is executable).
	Mode fs.FileMode
	// UID and GID own the file. Zero means root.
	UID, GID int
}

// Spec describes an image of one layer.
type Spec struct {
	// Ref names the image, e.g. "strait:dev" or
	// "registry.k8s.io/pause:3.10". It is normalized as Docker does
	// ("strait:dev" is "docker.io/library/strait:dev"); a tag is required,
	// since a node without a registry must never try to pull ":latest".
	Ref string
	// Files are the layer's files.
	Files []File
	// Entrypoint and Cmd are the image config's.
	Entrypoint, Cmd []string
	// User runs the entrypoint, "uid:gid". Zero means root.
	User string
	// Env is "KEY=value" pairs.
	Env []string
	// WorkingDir is the entrypoint's directory. Zero means "/".
	WorkingDir string
	// Labels are the image config's labels.
	Labels map[string]string
	// Architecture is a GOARCH value. Zero means runtime.GOARCH.
	Architecture string
}

// validate checks spec and returns its normalized tag.
func (s Spec) validate() (name.Tag, error) {
	var errs *multierror.Error
	add := func(format string, args ...any) {
		errs = multierror.Append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidSpec}, args...)...))
	}
	tag, err := name.NewTag(s.Ref)
	if err != nil {
		add("ref %q: %v (want name:tag)", s.Ref, err)
	} else if !strings.Contains(s.Ref[strings.LastIndex(s.Ref, "/")+1:], ":") {
		add("ref %q: no tag (want name:tag)", s.Ref)
	}
	if len(s.Files) == 0 {
		add("no files")
	}
	seen := map[string]bool{}
	for _, f := range s.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			add("file path %q: want a clean absolute path", f.Path)
		}
		if seen[f.Path] {
			add("file %q listed twice", f.Path)
		}
		seen[f.Path] = true
		if (f.Source == "") == (f.Data == nil) {
			add("file %q: set exactly one of Source and Data", f.Path)
		}
	}
	if len(s.Entrypoint) == 0 && len(s.Cmd) == 0 {
		add("neither Entrypoint nor Cmd")
	}
	return tag, errs.ErrorOrNil()
}

// Build returns the image described by spec, with its normalized tag.
func Build(spec Spec) (v1.Image, name.Tag, error) {
	tag, err := spec.validate()
	if err != nil {
		return nil, name.Tag{}, err
	}
	layerTar, err := layerTar(spec.Files)
	if err != nil {
		return nil, name.Tag{}, err
	}
	// Layers are mostly binaries, which compress little: the fastest
	// level costs a few percent of size and saves seconds per image.
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return nil, name.Tag{}, fmt.Errorf("ociimage: layer: %w", err)
	}
	arch := spec.Architecture
	if arch == "" {
		arch = runtime.GOARCH
	}
	workDir := spec.WorkingDir
	if workDir == "" {
		workDir = "/"
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(base, &v1.ConfigFile{
		Architecture: arch,
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		Config: v1.Config{
			Entrypoint: spec.Entrypoint,
			Cmd:        spec.Cmd,
			User:       spec.User,
			Env:        spec.Env,
			WorkingDir: workDir,
			Labels:     spec.Labels,
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, name.Tag{}, fmt.Errorf("ociimage: config: %w", err)
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "ociimage"},
	})
	if err != nil {
		return nil, name.Tag{}, fmt.Errorf("ociimage: append layer: %w", err)
	}
	return img, tag, nil
}

// layerTar returns the uncompressed tar of files, with their parent
// directories, in path order and with fixed timestamps.
func layerTar(files []File) ([]byte, error) {
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range sorted {
		data, mode, err := f.content()
		if err != nil {
			return nil, err
		}
		rel := strings.TrimPrefix(f.Path, "/")
		var parents []string
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
				return nil, fmt.Errorf("ociimage: tar: %w", err)
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: int64(mode.Perm()), Size: int64(len(data)),
			Uid: f.UID, Gid: f.GID, ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("ociimage: tar: %w", err)
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("ociimage: tar: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("ociimage: tar: %w", err)
	}
	return buf.Bytes(), nil
}

func (f File) content() ([]byte, fs.FileMode, error) {
	mode := f.Mode
	if f.Source == "" {
		if mode == 0 {
			mode = 0o644
		}
		return f.Data, mode, nil
	}
	data, err := os.ReadFile(f.Source)
	if err != nil {
		return nil, 0, fmt.Errorf("ociimage: %s: %w", f.Path, err)
	}
	if mode == 0 {
		mode = 0o644
		if st, err := os.Stat(f.Source); err == nil && st.Mode().Perm()&0o111 != 0 {
			mode = 0o755
		}
	}
	return data, mode, nil
}

// Write writes img as an OCI image layout tar (oci-layout, index.json and
// blobs/sha256/) whose one index entry carries tag in the annotations
// containerd and OCI tools read.
func Write(w io.Writer, tag name.Tag, img v1.Image) error {
	tw := tar.NewWriter(w)
	add := func(name string, data []byte) error {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("ociimage: write %s: %w", name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("ociimage: write %s: %w", name, err)
		}
		return nil
	}
	blob := func(h v1.Hash, data []byte) error { return add("blobs/"+h.Algorithm+"/"+h.Hex, data) }

	if err := add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("ociimage: layers: %w", err)
	}
	for _, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return fmt.Errorf("ociimage: layer digest: %w", err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("ociimage: layer: %w", err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("ociimage: layer: %w", err)
		}
		if err := blob(h, data); err != nil {
			return err
		}
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("ociimage: config digest: %w", err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("ociimage: config: %w", err)
	}
	if err := blob(cfgName, cfg); err != nil {
		return err
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("ociimage: manifest: %w", err)
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("ociimage: manifest digest: %w", err)
	}
	if err := blob(digest, manifest); err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("ociimage: config: %w", err)
	}
	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1,
			Size:      int64(len(manifest)),
			Digest:    digest,
			Platform:  &v1.Platform{OS: cf.OS, Architecture: cf.Architecture},
			Annotations: map[string]string{
				AnnotationContainerdName: FullName(tag),
				AnnotationRefName:        tag.TagStr(),
			},
		}},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return fmt.Errorf("ociimage: index: %w", err)
	}
	if err := add("index.json", indexJSON); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("ociimage: tar: %w", err)
	}
	return nil
}

// FullName returns the name Kubernetes and containerd give the image of tag:
// "strait:dev" is "docker.io/library/strait:dev".
func FullName(tag name.Tag) string {
	reg := tag.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + tag.RepositoryStr() + ":" + tag.TagStr()
}

// WriteFile builds the image of spec and writes it to path (through a
// temporary file renamed into place, so a reader never sees half an image).
func WriteFile(path string, spec Spec) error {
	img, tag, err := Build(spec)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("ociimage: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := Write(tmp, tag, img); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ociimage: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil { // CreateTemp makes it 0600
		return fmt.Errorf("ociimage: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("ociimage: %w", err)
	}
	return nil
}
