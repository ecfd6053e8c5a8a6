// Package relay copies bytes between two connections in both directions with
// TCP semantics: an orderly end of one direction (FIN) is passed on as a
// half-close, and an abortive end (RST, QUIC stream reset) aborts both sides.
//
// Conns adapt *net.TCPConn (TCP) and *quic.Stream (Stream). Copies use
// pooled buffers, so the hot path does not allocate per read; between two
// TCP connections the copy is left to the kernel (splice on Linux).
//
//	r := relay.New(relay.Config{})
//	res := r.Pipe(relay.TCP(client), relay.Stream(stream, resetCode))
package relay
