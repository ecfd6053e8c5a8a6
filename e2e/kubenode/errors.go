package kubenode

import "errors"

var (
	// ErrInvalidConfig is wrapped by every validation error of Start.
	ErrInvalidConfig = errors.New("kubenode: invalid config")
	// ErrNoScript is returned when e2e/kubetools/build.sh cannot be found
	// above the working directory.
	ErrNoScript = errors.New("kubenode: e2e/kubetools/build.sh not found above the working directory")
	// ErrNotReady is wrapped when a component does not become ready in time.
	ErrNotReady = errors.New("kubenode: not ready")
)
