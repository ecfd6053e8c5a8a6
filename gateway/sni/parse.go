package sni

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// TLS constants used by the parser (RFC 8446, RFC 6066).
const (
	// HeaderLen is the length of a TLS record header.
	HeaderLen = 5
	// MaxRecordLen is the largest payload of a plaintext TLS record.
	MaxRecordLen = 1 << 14

	recordTypeHandshake  = 22
	handshakeClientHello = 1
	extServerName        = 0
	nameTypeHostName     = 0
	maxHostNameLen       = 255
)

// ParseClientHello returns the server name of the ClientHello held in
// record, a complete TLS record (header included).
func ParseClientHello(record []byte) (string, error) {
	if len(record) < HeaderLen {
		return "", fmt.Errorf("%w: record shorter than its header", ErrMalformed)
	}
	if err := checkHeader(record[:HeaderLen]); err != nil {
		return "", err
	}
	n := recordLen(record[:HeaderLen])
	if len(record)-HeaderLen != n {
		return "", fmt.Errorf("%w: record length %d, have %d bytes", ErrMalformed, n, len(record)-HeaderLen)
	}
	return parseHandshake(record[HeaderLen:])
}

// checkHeader validates a record header: a handshake record of a TLS 1.x
// version whose length is within bounds.
func checkHeader(h []byte) error {
	if h[0] != recordTypeHandshake || h[1] != 3 {
		return ErrNotHandshake
	}
	if n := recordLen(h); n > MaxRecordLen || n == 0 {
		return fmt.Errorf("%w: %d bytes", ErrRecordTooLarge, n)
	}
	return nil
}

func recordLen(h []byte) int { return int(h[3])<<8 | int(h[4]) }

func parseHandshake(payload []byte) (string, error) {
	s := cryptobyte.String(payload)
	var msgType uint8
	var body cryptobyte.String
	if !s.ReadUint8(&msgType) || msgType != handshakeClientHello {
		return "", fmt.Errorf("%w: not a ClientHello", ErrMalformed)
	}
	if !s.ReadUint24LengthPrefixed(&body) {
		return "", fmt.Errorf("%w: handshake message exceeds the record", ErrMalformed)
	}
	return parseClientHelloBody(body)
}

func parseClientHelloBody(s cryptobyte.String) (string, error) {
	var version uint16
	var sessionID, suites, compression, exts cryptobyte.String
	ok := s.ReadUint16(&version) && s.Skip(32) &&
		s.ReadUint8LengthPrefixed(&sessionID) && len(sessionID) <= 32 &&
		s.ReadUint16LengthPrefixed(&suites) && len(suites)%2 == 0 && len(suites) > 0 &&
		s.ReadUint8LengthPrefixed(&compression) && len(compression) > 0
	if !ok {
		return "", fmt.Errorf("%w: bad fixed fields", ErrMalformed)
	}
	if s.Empty() {
		return "", ErrNoServerName
	}
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return "", fmt.Errorf("%w: bad extensions block", ErrMalformed)
	}
	return findServerName(exts)
}

func findServerName(exts cryptobyte.String) (string, error) {
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return "", fmt.Errorf("%w: bad extension", ErrMalformed)
		}
		if typ == extServerName {
			return parseServerName(data)
		}
	}
	return "", ErrNoServerName
}

func parseServerName(data cryptobyte.String) (string, error) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return "", fmt.Errorf("%w: bad server_name extension", ErrMalformed)
	}
	for !list.Empty() {
		var nameType uint8
		var name cryptobyte.String
		if !list.ReadUint8(&nameType) || !list.ReadUint16LengthPrefixed(&name) {
			return "", fmt.Errorf("%w: bad server_name entry", ErrMalformed)
		}
		if nameType != nameTypeHostName {
			continue
		}
		if err := checkHostName(name); err != nil {
			return "", err
		}
		return string(name), nil
	}
	return "", ErrNoServerName
}

// checkHostName accepts 1-255 printable ASCII characters other than space,
// which every name of the Strait grammar is; the router validates further.
func checkHostName(name []byte) error {
	if len(name) == 0 || len(name) > maxHostNameLen {
		return fmt.Errorf("%w: host name of %d bytes", ErrMalformed, len(name))
	}
	for _, c := range name {
		if c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: host name has byte 0x%02x", ErrMalformed, c)
		}
	}
	return nil
}
