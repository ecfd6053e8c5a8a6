// Package proxyproto encodes and decodes the binary PROXY protocol version 2
// header that HAProxy defines: a header sent once at the start of a TCP
// connection that tells the receiver who the original client was.
//
// Strait's inbound proxy writes one such header on every connection it opens
// to the application, before any payload. Besides the caller's address, the
// header carries the caller's authenticated SPIFFE ID in a TLV of type
// [TypeSPIFFEID] (0xE0, the first type of the range 0xE0-0xEF that the
// specification reserves for custom use), and the destination name the caller
// asked for in the standard [TypeAuthority] TLV.
//
// Health checks and other connections the proxy opens on its own behalf carry
// a header with the LOCAL command and no addresses.
//
// An application reads the header with [Read] or, more simply, wraps its
// listener:
//
//	ln, _ := net.Listen("tcp", "127.0.0.1:8080")
//	pl := proxyproto.NewListener(ln, proxyproto.ListenerConfig{})
//	conn, _ := pl.Accept()
//	h, err := conn.(*proxyproto.Conn).Header() // reads the header
//	if err == nil {
//		id, _ := h.SPIFFEID() // "spiffe://east.example/ns/default/sa/client"
//	}
//
// Only the stream (TCP) protocol over IPv4, IPv6 or an unspecified family is
// supported; UNIX and datagram headers are rejected.
package proxyproto
