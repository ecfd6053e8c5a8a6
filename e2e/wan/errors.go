package wan

import "errors"

var (
	// ErrInvalidConfig is wrapped by every validation error of NewLink.
	ErrInvalidConfig = errors.New("wan: invalid config")
	// ErrAlreadyRunning is returned by Run when the link runs already or ran.
	ErrAlreadyRunning = errors.New("wan: link already run")
	// ErrNoBackend is returned when every backend refused a TCP dial.
	ErrNoBackend = errors.New("wan: no backend reachable")
)
