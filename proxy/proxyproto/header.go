package proxyproto

import (
	"net/netip"
)

// signature starts every PROXY v2 header.
var signature = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// Sizes of the fixed parts of a header.
const (
	// fixedSize is the signature, version/command, family/protocol and
	// length fields.
	fixedSize = 16
	inet4Size = 4 + 4 + 2 + 2
	inet6Size = 16 + 16 + 2 + 2
	tlvHead   = 3
)

// MaxHeaderSize is the largest header Read accepts, fixed part included.
// The protocol allows 65551 bytes; Strait's headers are well under 1 KiB, and
// a cap keeps a hostile peer from making the reader allocate.
const MaxHeaderSize = 4096

// Command says whether the connection is relayed or the proxy's own.
type Command byte

// Commands of the PROXY v2 protocol.
const (
	// Local marks a connection the proxy made on its own behalf, for example
	// a health check. Its addresses are meaningless.
	Local Command = 0x0
	// Proxy marks a relayed connection: the addresses are the original
	// client's and the address it connected to.
	Proxy Command = 0x1
)

func (c Command) String() string {
	switch c {
	case Local:
		return "LOCAL"
	case Proxy:
		return "PROXY"
	}
	return "UNKNOWN"
}

// Types of TLV used by Strait. The range 0xE0-0xEF is reserved by the
// specification for custom use; Strait takes 0xE0.
const (
	// TypeALPN is PP2_TYPE_ALPN: the application protocol negotiated.
	TypeALPN byte = 0x01
	// TypeAuthority is PP2_TYPE_AUTHORITY: the host name the client asked
	// for (Strait puts the inner TLS SNI there).
	TypeAuthority byte = 0x02
	// TypeSPIFFEID carries the caller's authenticated SPIFFE ID, as a UTF-8
	// URI such as "spiffe://east.example/ns/default/sa/client".
	TypeSPIFFEID byte = 0xE0
)

// TLV is one type-length-value extension of a header.
type TLV struct {
	Type  byte
	Value []byte
}

// Header is a decoded PROXY v2 header. For the Local command, and for headers
// whose family is unspecified, Source and Destination are the zero value.
type Header struct {
	Command Command
	// Source is the original client's address; Destination is the address
	// the client connected to. Both are IPv4 or both IPv6 on the wire: an
	// IPv4 address next to an IPv6 one is sent IPv4-mapped.
	Source      netip.AddrPort
	Destination netip.AddrPort
	// TLVs in wire order. Unknown types are kept.
	TLVs []TLV
}

// TLV returns the value of the first TLV of type t.
func (h *Header) TLV(t byte) ([]byte, bool) {
	for _, tlv := range h.TLVs {
		if tlv.Type == t {
			return tlv.Value, true
		}
	}
	return nil, false
}

// SPIFFEID returns the caller's SPIFFE ID from the TypeSPIFFEID TLV.
func (h *Header) SPIFFEID() (string, bool) {
	v, ok := h.TLV(TypeSPIFFEID)
	return string(v), ok
}

// Authority returns the TypeAuthority TLV.
func (h *Header) Authority() (string, bool) {
	v, ok := h.TLV(TypeAuthority)
	return string(v), ok
}
