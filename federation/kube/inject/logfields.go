package inject

// Structured log keys, stable so that dashboards and alerts can rely on them.
const (
	logNamespace = "namespace"
	logName      = "name"
	logError     = "error"
	logReason    = "reason"
	logResult    = "result"
	logAddress   = "address"
)
