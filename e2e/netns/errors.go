package netns

import "errors"

var (
	// ErrInvalidSpec is wrapped by every validation error of Build.
	ErrInvalidSpec = errors.New("netns: invalid spec")
	// ErrNotRoot is returned when the process lacks the privileges to manage
	// network namespaces.
	ErrNotRoot = errors.New("netns: root (CAP_SYS_ADMIN and CAP_NET_ADMIN) required")
	// ErrClosed is returned by operations on a closed topology.
	ErrClosed = errors.New("netns: topology closed")
	// ErrNotExited is returned by Proc.Restart while the process still runs.
	ErrNotExited = errors.New("netns: process still running")
)
