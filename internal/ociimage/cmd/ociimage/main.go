// Command ociimage writes a one-layer container image as an OCI image layout
// tarball, without Docker or a registry (package ociimage). `make image`
// runs it for Strait's image:
//
//	ociimage -ref strait:dev -o bin/strait-image.tar -user 65532:65532 \
//		-entrypoint /usr/local/bin/strait bin/strait-linux=/usr/local/bin/strait
//
// Each argument is SOURCE=PATH: the file SOURCE on disk becomes PATH in the
// image (mode 0755 when SOURCE is executable, else 0644). -entrypoint and
// -env may be repeated.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/strait-mesh/strait/internal/ociimage"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, " ") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var entrypoint, env list
	ref := flag.String("ref", "", "image name with tag, e.g. strait:dev")
	out := flag.String("o", "", "tarball to write")
	user := flag.String("user", "", "uid:gid that runs the entrypoint (default root)")
	flag.Var(&entrypoint, "entrypoint", "entrypoint word (repeat for each)")
	flag.Var(&env, "env", "KEY=value (repeat for each)")
	flag.Parse()
	if err := run(*ref, *out, *user, entrypoint, env, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func run(ref, out, user string, entrypoint, env, args []string) error {
	if out == "" {
		return fmt.Errorf("-o is required")
	}
	spec := ociimage.Spec{Ref: ref, User: user, Entrypoint: entrypoint, Env: env}
	for _, a := range args {
		src, dst, ok := strings.Cut(a, "=")
		if !ok || src == "" || dst == "" {
			return fmt.Errorf("argument %q: want SOURCE=PATH", a)
		}
		spec.Files = append(spec.Files, ociimage.File{Path: dst, Source: src})
	}
	if err := ociimage.WriteFile(out, spec); err != nil {
		return err
	}
	fmt.Printf("wrote %s (%s)\n", out, ref)
	return nil
}
