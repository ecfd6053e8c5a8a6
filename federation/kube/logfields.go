package kube

// Structured log keys, stable so that dashboards and alerts can rely on them.
const (
	logNamespace = "namespace"
	logName      = "name"
	logError     = "error"
	logRetryIn   = "retry_in"
	logCluster   = "cluster"
	logAddress   = "address"
)
