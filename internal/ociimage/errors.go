package ociimage

import "errors"

// ErrInvalidSpec is wrapped by every validation error of a Spec.
var ErrInvalidSpec = errors.New("ociimage: invalid spec")
