package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Read reads one PROXY v2 header from r and consumes exactly its bytes: what
// follows stays in r. It returns ErrNoHeader when r does not start with the
// signature (nothing is consumed then), ErrTooLarge when the announced length
// exceeds MaxHeaderSize, and errors wrapping ErrMalformed or ErrUnsupported
// for invalid headers. A stream that ends inside the header returns
// io.ErrUnexpectedEOF (or io.EOF when it ends before the first byte).
func Read(r *bufio.Reader) (*Header, error) {
	fixed, err := r.Peek(fixedSize)
	if err != nil {
		if len(fixed) > 0 && !bytes.HasPrefix(signature[:], fixed) {
			return nil, ErrNoHeader
		}
		if errors.Is(err, io.EOF) && len(fixed) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if !bytes.Equal(fixed[:12], signature[:]) {
		return nil, ErrNoHeader
	}
	if fixed[12]&0xF0 != version2 {
		return nil, fmt.Errorf("%w: version %d", ErrUnsupported, fixed[12]>>4)
	}
	n := int(binary.BigEndian.Uint16(fixed[14:16]))
	if fixedSize+n > MaxHeaderSize {
		return nil, fmt.Errorf("%w: %d bytes announced", ErrTooLarge, fixedSize+n)
	}
	buf := make([]byte, fixedSize+n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return parse(buf[12], buf[13], buf[fixedSize:])
}

// Parse decodes a complete header held in b, which must contain nothing
// else. The TLV values of the result alias b.
func Parse(b []byte) (*Header, error) {
	if len(b) < fixedSize || !bytes.Equal(b[:12], signature[:]) {
		return nil, ErrNoHeader
	}
	if len(b) > MaxHeaderSize {
		return nil, ErrTooLarge
	}
	if b[12]&0xF0 != version2 {
		return nil, fmt.Errorf("%w: version %d", ErrUnsupported, b[12]>>4)
	}
	if n := int(binary.BigEndian.Uint16(b[14:16])); n != len(b)-fixedSize {
		return nil, fmt.Errorf("%w: length field %d, %d bytes follow", ErrMalformed, n, len(b)-fixedSize)
	}
	return parse(b[12], b[13], b[fixedSize:])
}

// parse decodes the variable part of a header.
func parse(verCmd, famProto byte, rest []byte) (*Header, error) {
	h := &Header{Command: Command(verCmd & 0x0F)}
	if h.Command != Local && h.Command != Proxy {
		return nil, fmt.Errorf("%w: command %d", ErrMalformed, h.Command)
	}
	addrLen, err := addrSize(famProto)
	if err != nil {
		return nil, err
	}
	if len(rest) < addrLen {
		return nil, fmt.Errorf("%w: %d address bytes, need %d", ErrMalformed, len(rest), addrLen)
	}
	if h.Command == Proxy {
		h.Source, h.Destination = parseAddrs(famProto, rest[:addrLen])
	}
	if h.TLVs, err = parseTLVs(rest[addrLen:]); err != nil {
		return nil, err
	}
	return h, nil
}

// addrSize is the size of the address block of a family/protocol byte.
func addrSize(famProto byte) (int, error) {
	fam, proto := famProto&0xF0, famProto&0x0F
	switch {
	case fam == famUnspec:
		return 0, nil
	case fam == famUnix:
		return 0, fmt.Errorf("%w: UNIX socket addresses", ErrUnsupported)
	case proto != protoTCP:
		return 0, fmt.Errorf("%w: transport protocol %d", ErrUnsupported, proto)
	case fam == famInet:
		return inet4Size, nil
	case fam == famInet6:
		return inet6Size, nil
	}
	return 0, fmt.Errorf("%w: address family %d", ErrMalformed, fam>>4)
}

func parseAddrs(famProto byte, b []byte) (src, dst netip.AddrPort) {
	switch famProto & 0xF0 {
	case famInet:
		s, d := netip.AddrFrom4([4]byte(b[0:4])), netip.AddrFrom4([4]byte(b[4:8]))
		return netip.AddrPortFrom(s, binary.BigEndian.Uint16(b[8:])), netip.AddrPortFrom(d, binary.BigEndian.Uint16(b[10:]))
	case famInet6:
		s, d := netip.AddrFrom16([16]byte(b[0:16])), netip.AddrFrom16([16]byte(b[16:32]))
		return netip.AddrPortFrom(s, binary.BigEndian.Uint16(b[32:])), netip.AddrPortFrom(d, binary.BigEndian.Uint16(b[34:]))
	}
	return netip.AddrPort{}, netip.AddrPort{}
}

// parseTLVs decodes TLVs that must exactly fill b. Values alias b.
func parseTLVs(b []byte) ([]TLV, error) {
	var tlvs []TLV
	for len(b) > 0 {
		if len(b) < tlvHead {
			return nil, fmt.Errorf("%w: truncated TLV", ErrMalformed)
		}
		n := int(binary.BigEndian.Uint16(b[1:3]))
		if len(b) < tlvHead+n {
			return nil, fmt.Errorf("%w: TLV 0x%02x of %d bytes overruns the header", ErrMalformed, b[0], n)
		}
		tlvs = append(tlvs, TLV{Type: b[0], Value: b[tlvHead : tlvHead+n : tlvHead+n]})
		b = b[tlvHead+n:]
	}
	return tlvs, nil
}
