package wan

// Structured log keys of this package.
const (
	logLink    = "link"
	logClient  = "client"
	logBackend = "backend"
	logError   = "error"
	logShape   = "shape"
)
