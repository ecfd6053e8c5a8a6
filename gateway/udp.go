package gateway

import (
	"fmt"
	"log/slog"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// udpBufferSize is the socket buffer size quic-go recommends (see
// https://github.com/quic-go/quic-go/wiki/UDP-Buffer-Sizes).
const udpBufferSize = 7 << 20

// listenUDP binds the ingress socket and sizes its buffers, logging once and
// clearly when the kernel caps them.
func listenUDP(addr string, log *slog.Logger) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: ingress address %q: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("gateway: listen ingress: %w", err)
	}
	sizeBuffers(conn, log)
	return conn, nil
}

// sizeBuffers asks for udpBufferSize in each direction, forcing it past
// net.core.rmem_max/wmem_max when the process may (CAP_NET_ADMIN).
func sizeBuffers(conn *net.UDPConn, log *slog.Logger) {
	_ = conn.SetReadBuffer(udpBufferSize)
	_ = conn.SetWriteBuffer(udpBufferSize)
	raw, err := conn.SyscallConn()
	if err != nil {
		return
	}
	// Linux reports twice the size it granted (the rest is its overhead).
	rcv := forceBuffer(raw, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF) / 2
	snd := forceBuffer(raw, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF) / 2
	if rcv < udpBufferSize || snd < udpBufferSize {
		log.Warn("gateway: the kernel capped the UDP socket buffers below what QUIC needs for full throughput; "+
			"raise net.core.rmem_max and net.core.wmem_max (sysctl) to at least 7500000",
			logWant, udpBufferSize, logRcvBuf, rcv, logSndBuf, snd)
	}
}

// forceBuffer tries the privileged option (ignores rmem_max/wmem_max when
// the process has CAP_NET_ADMIN) and returns the resulting size.
func forceBuffer(raw syscall.RawConn, force, opt int) int {
	size := 0
	_ = raw.Control(func(fd uintptr) {
		cur, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, opt)
		if err == nil && cur/2 >= udpBufferSize {
			size = cur
			return
		}
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, force, udpBufferSize)
		size, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, opt)
	})
	return size
}
