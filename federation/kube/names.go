package kube

import (
	"crypto/sha256"
	"encoding/hex"
)

// Labels, annotations and names the controller uses.
const (
	// AnnotationConsumers on a ServiceExport lists, comma-separated, the
	// SPIFFE IDs or trust domains (spiffe://td) outside the cluster that may
	// connect to the service. Empty means the cluster's own trust domain only.
	AnnotationConsumers = "strait.io/consumers"
	// AnnotationServers on a ServiceExport lists, comma-separated, the
	// service accounts of the service's namespace whose workloads may serve
	// it: callers refuse any other identity. Empty means any service account
	// of the namespace in the cluster's trust domain.
	AnnotationServers = "strait.io/servers"
	// Finalizer is set on every ServiceExport the controller exported, so
	// that its deletion withdraws the Export from etcd first.
	Finalizer = "strait.io/export"
	// LabelManagedBy marks the objects the controller owns, with the value
	// ManagedBy.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "strait"
	// LabelServiceName names the multi-cluster service of a derived Service
	// or EndpointSlice (KEP-1645).
	LabelServiceName = "multicluster.kubernetes.io/service-name"
	// LabelEndpointSliceManagedBy tells the EndpointSlice controllers whose
	// slice it is; EndpointSliceManager is the controller's value.
	LabelEndpointSliceManagedBy = "endpointslice.kubernetes.io/managed-by"
	EndpointSliceManager        = "controller.strait.io"
	// LabelKubeServiceName ties an EndpointSlice to its Service.
	LabelKubeServiceName = "kubernetes.io/service-name"
	// FieldManager is the controller's name in managedFields.
	FieldManager = "strait-kube-controller"
)

// maxNameLength is the length limit of a Service name (a DNS label).
const maxNameLength = 63

// DerivedServiceName is the name of the Service derived from the
// ServiceImport of service name: "derived-<name>", or "derived-<hash>" when
// that would not fit in a DNS label.
func DerivedServiceName(name string) string {
	const prefix = "derived-"
	if len(prefix)+len(name) <= maxNameLength {
		return prefix + name
	}
	sum := sha256.Sum256([]byte(name))
	return prefix + hex.EncodeToString(sum[:])[:20]
}
