package inject

import "errors"

// ErrBadAnnotation is wrapped by the refusal of a pod whose strait.io/
// annotations have a value the injector does not understand.
var ErrBadAnnotation = errors.New("inject: bad annotation")

// ErrBadRequest is wrapped by the refusal of an admission review that is not
// a pod creation the injector can read.
var ErrBadRequest = errors.New("inject: bad admission request")

// ErrNameConflict is wrapped by the refusal of a pod that already has a
// container or volume of a name the sidecar needs (but no strait-proxy
// container, which would mean it is injected already).
var ErrNameConflict = errors.New("inject: name conflict")
