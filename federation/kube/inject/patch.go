package inject

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// PatchOp is one operation of a JSON Patch (RFC 6902).
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Patch returns the JSON Patch that adds the sidecar of Sidecar to pod and
// the annotation strait.io/injected. It wraps ErrNameConflict when pod
// already has a container or volume of one of the sidecar's names.
func (in *Injector) Patch(pod *corev1.Pod) ([]PatchOp, error) {
	inits, containers, volumes := in.Sidecar(pod)
	var conflicts []string
	all := slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers)
	for _, c := range slices.Concat(inits, containers) {
		if slices.ContainsFunc(all, func(o corev1.Container) bool { return o.Name == c.Name }) {
			conflicts = append(conflicts, "container "+c.Name)
		}
	}
	for _, v := range volumes {
		if slices.ContainsFunc(pod.Spec.Volumes, func(o corev1.Volume) bool { return o.Name == v.Name }) {
			conflicts = append(conflicts, "volume "+v.Name)
		}
	}
	if len(conflicts) > 0 {
		return nil, fmt.Errorf("%w: the pod already has %s", ErrNameConflict, strings.Join(conflicts, ", "))
	}
	var ops []PatchOp
	ops = appendList(ops, "/spec/initContainers", len(pod.Spec.InitContainers), inits)
	ops = appendList(ops, "/spec/containers", len(pod.Spec.Containers), containers)
	ops = appendList(ops, "/spec/volumes", len(pod.Spec.Volumes), volumes)
	if pod.Annotations == nil {
		ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations", Value: map[string]string{AnnotationInjected: "true"}})
	} else {
		ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations/" + escape(AnnotationInjected), Value: "true"})
	}
	return ops, nil
}

// appendList adds the operations that append items to the list at path,
// which holds n items (a list of none may be absent: it is added whole).
func appendList[T any](ops []PatchOp, path string, n int, items []T) []PatchOp {
	if len(items) == 0 {
		return ops
	}
	if n == 0 {
		return append(ops, PatchOp{Op: "add", Path: path, Value: items})
	}
	for _, it := range items {
		ops = append(ops, PatchOp{Op: "add", Path: path + "/-", Value: it})
	}
	return ops
}

// escape escapes a JSON Pointer reference token (RFC 6901).
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func intOrString(port int) intstr.IntOrString { return intstr.FromInt32(int32(port)) }
