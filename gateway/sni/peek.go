package sni

import (
	"fmt"
	"io"
	"net"
	"time"
)

// Peek reads the first TLS record of conn, which must arrive within timeout,
// and returns the server name of the ClientHello it holds together with the
// record's bytes. It reads nothing beyond that record. The read deadline of
// conn is cleared before Peek returns.
func Peek(conn net.Conn, timeout time.Duration) (serverName string, record []byte, err error) {
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return "", nil, fmt.Errorf("sni: set deadline: %w", err)
	}
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	return ReadClientHello(conn)
}

// ReadClientHello reads exactly one TLS record from r and parses it as
// Peek does, without a deadline of its own. It returns ErrNotHandshake as
// soon as the first byte is not that of a handshake record (a plaintext
// client), without waiting for more.
func ReadClientHello(r io.Reader) (serverName string, record []byte, err error) {
	var hdr [HeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:1]); err != nil {
		return "", nil, fmt.Errorf("sni: read record header: %w", err)
	}
	if hdr[0] != recordTypeHandshake {
		return "", nil, ErrNotHandshake
	}
	if _, err := io.ReadFull(r, hdr[1:]); err != nil {
		return "", nil, fmt.Errorf("sni: read record header: %w", err)
	}
	if err := checkHeader(hdr[:]); err != nil {
		return "", nil, err
	}
	record = make([]byte, HeaderLen+recordLen(hdr[:]))
	copy(record, hdr[:])
	if _, err := io.ReadFull(r, record[HeaderLen:]); err != nil {
		return "", nil, fmt.Errorf("sni: read ClientHello: %w", err)
	}
	name, err := ParseClientHello(record)
	return name, record, err
}
