package sni

import "errors"

// ErrNotHandshake is returned when the first record is not a TLS handshake
// record.
var ErrNotHandshake = errors.New("sni: first record is not a TLS handshake")

// ErrRecordTooLarge is returned when the first record's length exceeds
// MaxRecordLen.
var ErrRecordTooLarge = errors.New("sni: record exceeds the size limit")

// ErrMalformed is returned for a ClientHello that does not parse, including
// one split across several records.
var ErrMalformed = errors.New("sni: malformed ClientHello")

// ErrNoServerName is returned for a ClientHello without a host_name in its
// server_name extension.
var ErrNoServerName = errors.New("sni: ClientHello has no server name")
