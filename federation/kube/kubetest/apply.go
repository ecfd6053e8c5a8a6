package kubetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// Object is one manifest read from a file.
type Object struct {
	// File is where it was read, Obj what it says.
	File string
	Obj  *unstructured.Unstructured
}

// ReadManifests reads every Kubernetes object of the YAML files at paths
// (files, or directories walked for *.yaml and *.yml). Documents without
// apiVersion and kind (empty ones, kustomization files) are skipped.
func ReadManifests(paths ...string) ([]Object, error) {
	var files []string
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	slices.Sort(files)
	var out []Object
	for _, f := range files {
		objs, err := readFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

func readFile(path string) ([]Object, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(fh, 4096)
	var out []Object
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		u := &unstructured.Unstructured{Object: m}
		if len(m) == 0 || u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetKind() == "Kustomization" {
			continue
		}
		out = append(out, Object{File: path, Obj: u})
	}
}

// ApplyOptions configures Apply.
type ApplyOptions struct {
	// DryRun asks the server to validate and admit without persisting.
	DryRun bool
	// FieldManager is the apply field manager. Zero means "kubetest".
	FieldManager string
}

// Apply applies objects with server-side apply: CustomResourceDefinitions
// first (waiting until each is established), then Namespaces, then the rest
// in order. It returns every object's error joined.
func Apply(ctx context.Context, cfg *rest.Config, objs []Object, opts ApplyOptions) error {
	if opts.FieldManager == "" {
		opts.FieldManager = "kubetest"
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	isCRD := func(o Object) bool {
		return o.Obj.GetKind() == "CustomResourceDefinition" && o.Obj.GroupVersionKind().Group == "apiextensions.k8s.io"
	}
	var errs []error
	var crds []Object
	for _, o := range objs {
		if isCRD(o) {
			crds = append(crds, o)
			if err := applyOne(ctx, dyn, mapper, o, opts); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(crds) > 0 {
		if err := waitEstablished(ctx, dyn, crds, opts.DryRun); err != nil {
			errs = append(errs, err)
		}
		mapper.Reset()
	}
	isNamespace := func(o Object) bool {
		return o.Obj.GetKind() == "Namespace" && o.Obj.GroupVersionKind().Group == ""
	}
	for _, first := range []bool{true, false} {
		for _, o := range objs {
			if !isCRD(o) && isNamespace(o) == first {
				if err := applyOne(ctx, dyn, mapper, o, opts); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// MustApply applies the manifests at paths (see ReadManifests) or fails
// the test.
func MustApply(t testing.TB, cfg *rest.Config, paths ...string) {
	t.Helper()
	objs, err := ReadManifests(paths...)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Apply(ctx, cfg, objs, ApplyOptions{}); err != nil {
		t.Fatalf("kubetest: apply: %v", err)
	}
}

func applyOne(ctx context.Context, dyn dynamic.Interface, mapper *restmapper.DeferredDiscoveryRESTMapper, o Object, opts ApplyOptions) error {
	gvk := o.Obj.GroupVersionKind()
	name := fmt.Sprintf("%s: %s %s/%s", o.File, gvk.Kind, o.Obj.GetNamespace(), o.Obj.GetName())
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	data, err := json.Marshal(o.Obj.Object)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
	if m.Scope.Name() == "namespace" {
		ns := o.Obj.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		ri = dyn.Resource(m.Resource).Namespace(ns)
	}
	po := metav1.PatchOptions{FieldManager: opts.FieldManager, Force: ptrTo(true)}
	if opts.DryRun {
		po.DryRun = []string{metav1.DryRunAll}
	}
	if _, err := ri.Patch(ctx, o.Obj.GetName(), types.ApplyPatchType, data, po); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// waitEstablished polls the CRDs until each reports Established.
func waitEstablished(ctx context.Context, dyn dynamic.Interface, crds []Object, dryRun bool) error {
	if dryRun {
		return nil
	}
	crdResource := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, o := range crds {
		for {
			u, err := dyn.Resource(crdResource).Get(ctx, o.Obj.GetName(), metav1.GetOptions{})
			if err == nil && established(u) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("CRD %s not established: %w", o.Obj.GetName(), ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func established(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

func ptrTo[T any](v T) *T { return &v }
