// Package sni peeks at the first TLS record of a connection, a ClientHello,
// and extracts its server_name without terminating TLS. The bytes it reads
// are returned so that they can be replayed to the destination unchanged.
//
// Reading is bounded in size (one record of at most MaxRecordLen bytes of
// payload) and in time (the caller's timeout).
//
//	name, hello, err := sni.Peek(conn, 5*time.Second)
//	if err != nil { ... }
//	// route by name, then write hello to the destination before relaying.
package sni
