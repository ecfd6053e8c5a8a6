// Package ociimage writes container images without a container engine or a
// registry: one layer of files (static binaries, a few small files) and an
// image config, packed as an OCI image layout in a single tar file that
// `ctr images import` (containerd) and `docker load` read.
//
// It builds Strait's image (`make image`) and the small images the e2e
// Kubernetes nodes run (the pause image, test applications, CoreDNS). The
// image structures, digests and layer compression come from
// go-containerregistry; this package only lays the files out.
//
//	err := ociimage.WriteFile("bin/strait-image.tar", ociimage.Spec{
//		Ref:        "strait:dev",
//		Files:      []ociimage.File{{Path: "/usr/local/bin/strait", Source: "bin/strait-linux", Mode: 0o755}},
//		Entrypoint: []string{"/usr/local/bin/strait"},
//		User:       "65532:65532",
//	})
package ociimage
