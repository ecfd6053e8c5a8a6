package proxyproto

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
)

// Family and protocol byte values.
const (
	famUnspec = 0x00
	famInet   = 0x10
	famInet6  = 0x20
	famUnix   = 0x30
	protoTCP  = 0x01
	version2  = 0x20
)

// AppendBinary appends the wire form of h to b. It fails when the header
// would exceed MaxHeaderSize or a TLV value is longer than 65535 bytes, or
// when a Proxy header has invalid addresses.
func (h *Header) AppendBinary(b []byte) ([]byte, error) {
	fam, addrLen, err := h.family()
	if err != nil {
		return b, err
	}
	size := fixedSize + addrLen
	for _, t := range h.TLVs {
		if len(t.Value) > 0xFFFF {
			return b, fmt.Errorf("proxyproto: TLV 0x%02x is %d bytes, more than 65535", t.Type, len(t.Value))
		}
		size += tlvHead + len(t.Value)
	}
	if size > MaxHeaderSize {
		return b, fmt.Errorf("%w: %d bytes", ErrTooLarge, size)
	}
	b = append(b, signature[:]...)
	b = append(b, version2|byte(h.Command&0x0F), fam)
	b = binary.BigEndian.AppendUint16(b, uint16(size-fixedSize))
	b = h.appendAddrs(b, fam)
	for _, t := range h.TLVs {
		b = append(b, t.Type)
		b = binary.BigEndian.AppendUint16(b, uint16(len(t.Value)))
		b = append(b, t.Value...)
	}
	return b, nil
}

// MarshalBinary returns the wire form of h.
func (h *Header) MarshalBinary() ([]byte, error) {
	return h.AppendBinary(make([]byte, 0, 64))
}

// WriteTo writes the wire form of h to w in one Write.
func (h *Header) WriteTo(w io.Writer) (int64, error) {
	b, err := h.MarshalBinary()
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	return int64(n), err
}

// family picks the family byte and address block size of h.
func (h *Header) family() (byte, int, error) {
	switch h.Command {
	case Local:
		return famUnspec, 0, nil
	case Proxy:
	default:
		return 0, 0, fmt.Errorf("%w: command %d", ErrUnsupported, h.Command)
	}
	src, dst := h.Source.Addr(), h.Destination.Addr()
	if !src.IsValid() && !dst.IsValid() {
		return famUnspec, 0, nil
	}
	if !src.IsValid() || !dst.IsValid() {
		return 0, 0, fmt.Errorf("proxyproto: PROXY header needs both addresses or neither")
	}
	if src.Unmap().Is4() && dst.Unmap().Is4() {
		return famInet | protoTCP, inet4Size, nil
	}
	return famInet6 | protoTCP, inet6Size, nil
}

func (h *Header) appendAddrs(b []byte, fam byte) []byte {
	switch fam {
	case famInet | protoTCP:
		s, d := h.Source.Addr().Unmap().As4(), h.Destination.Addr().Unmap().As4()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
	case famInet6 | protoTCP:
		s, d := as16(h.Source.Addr()), as16(h.Destination.Addr())
		b = append(b, s[:]...)
		b = append(b, d[:]...)
	default:
		return b
	}
	b = binary.BigEndian.AppendUint16(b, h.Source.Port())
	return binary.BigEndian.AppendUint16(b, h.Destination.Port())
}

// as16 returns a in 16-byte form, IPv4 addresses IPv4-mapped, zone dropped.
func as16(a netip.Addr) [16]byte { return a.WithZone("").As16() }
