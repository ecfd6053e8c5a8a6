// Command rawquic is the transport's ceiling in Strait's benchmarks: a
// TCP-in / QUIC / TCP-out relay pair that moves each TCP connection over one
// bidirectional quic-go stream of one long-lived QUIC connection, with no
// Strait logic (no header, no routing, no SNI peek, no inner TLS). It uses
// TLS 1.3 with a self-signed certificate and the quic.Config flow-control
// settings Strait's gateway uses (quic-go's defaults: the gateway sets none
// of the window fields), and sizes its UDP socket buffers to 7 MiB as the
// gateway does. Copies use 32 KiB buffers, the size of gateway/relay's.
//
//	rawquic server -listen 127.0.0.1:4433 -to 127.0.0.1:5201
//	rawquic client -listen 127.0.0.1:15201 -to 127.0.0.1:4433
//	iperf3 -c 127.0.0.1 -p 15201
//
// Both sides run until SIGINT or SIGTERM.
package main
