// Package tunnel is the wire contract of Strait's gateway tunnel, shared by
// gateways and proxies. It depends only on the protobuf API.
//
// Every QUIC stream between two gateways starts with a frame holding a
// StreamHeader and is answered by a frame holding a StreamReply. A frame is a
// 2-byte big-endian length followed by that many bytes of protobuf; a frame
// is at most MaxFrameSize bytes, a limit checked before anything is
// allocated. After an accepted reply the stream carries the raw bytes of the
// inner, end-to-end mTLS connection.
//
// When an egress gateway refuses a proxy's connection before relaying any
// byte, it writes one plaintext TLS alert record whose description is
// AlertBase+code (224-255 is the private-use range of the TLS alert registry)
// and closes the connection:
//
//	21 0x03 0x03 0x00 0x02 0x02 224+code
//
// A proxy reads the first RefusalLen bytes of the gateway's answer and calls
// ParseRefusal to tell a gateway refusal from the destination's own TLS
// handshake:
//
//	var first [tunnel.RefusalLen]byte
//	if _, err := io.ReadFull(conn, first[:]); err == nil {
//		if code, ok := tunnel.ParseRefusal(first[:]); ok {
//			return &tunnel.RefusedError{Code: code}
//		}
//	}
package tunnel
