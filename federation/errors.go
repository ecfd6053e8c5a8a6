package federation

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidRecord is matched (errors.Is) by every error about a record that
// fails to decode or validate. The error also lists each problem found.
var ErrInvalidRecord = errors.New("invalid record")

// ErrStaleBundle is returned by PublishBundle when the bundle's sequence is
// not greater than the sequence already published for its trust domain.
var ErrStaleBundle = errors.New("stale trust bundle")

// ErrUnavailable is matched by errors of writes and reads that could not
// reach etcd (no connection, no leader, deadline passed): the control plane
// is unavailable, and the caller may retry later. Readers keep routing from
// the last snapshot meanwhile.
var ErrUnavailable = errors.New("control plane unavailable")

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("record not found")

// ErrConflict is returned when a compare-and-swap write kept losing to
// concurrent writers.
var ErrConflict = errors.New("concurrent update")

// InvalidRecordError describes a record that failed to decode or validate.
// It matches ErrInvalidRecord with errors.Is.
type InvalidRecordError struct {
	// Key is the etcd key of the record, when known.
	Key string
	// Kind is the kind the key says the record is, when known.
	Kind Kind
	// Reason is a short stable label for metrics: "size", "decode",
	// "validate" or "key".
	Reason string
	// Err lists every problem (a *multierror.Error or a single error).
	Err error
}

func (e *InvalidRecordError) Error() string {
	var b strings.Builder
	b.WriteString("federation: invalid record")
	if e.Key != "" {
		fmt.Fprintf(&b, " %s", e.Key)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(strings.TrimSpace(e.Err.Error()))
	}
	return b.String()
}

// Unwrap returns the problems.
func (e *InvalidRecordError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInvalidRecord) true.
func (e *InvalidRecordError) Is(target error) bool { return target == ErrInvalidRecord }
