package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"syscall"

	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"
)

// udpBufferSize is the socket buffer size quic-go recommends (see
// https://github.com/quic-go/quic-go/wiki/UDP-Buffer-Sizes).
const udpBufferSize = 7 << 20

// udpSocket is one UDP socket of the gateway with the QUIC transport that
// reads it: an ingress socket (with its listener) or the socket a slot of
// the pool dials from.
type udpSocket struct {
	conn *net.UDPConn
	tr   *quic.Transport
	ln   *quic.Listener // ingress sockets only
}

// close closes the listener, the transport and then the socket (a
// Transport does not close a socket it did not open).
func (s *udpSocket) close() {
	if s.ln != nil {
		_ = s.ln.Close()
	}
	if s.tr != nil {
		_ = s.tr.Close()
	}
	_ = s.conn.Close()
}

// listenIngress binds n UDP sockets on addr, sized as QUIC needs. With n
// above 1 they form one SO_REUSEPORT group whose packets are steered by
// connection ID (see steeringProgram), so that each socket, and the
// goroutine reading it, receives the packets of its own connections.
//
// SO_REUSEPORT would also let another process of the same user join the
// group; to keep "address in use" an error, the address is first bound
// without it, and released for the group.
func listenIngress(addr string, n int) ([]*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: ingress address %q: %w", addr, err)
	}
	first, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("gateway: listen ingress: %w", err)
	}
	if n == 1 {
		return []*net.UDPConn{first}, nil
	}
	bound := first.LocalAddr().String() // the port chosen for port 0
	_ = first.Close()
	lc := net.ListenConfig{Control: func(_, _ string, raw syscall.RawConn) error {
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	conns := make([]*net.UDPConn, 0, n)
	for range n {
		pc, err := lc.ListenPacket(context.Background(), "udp", bound)
		if err != nil {
			closeAll(conns)
			return nil, fmt.Errorf("gateway: listen ingress (SO_REUSEPORT): %w", err)
		}
		conns = append(conns, pc.(*net.UDPConn))
	}
	if err := attachSteering(conns[0], n); err != nil {
		closeAll(conns)
		return nil, fmt.Errorf("gateway: steer ingress packets by connection ID: %w", err)
	}
	return conns, nil
}

// listenDial binds a socket for dialing on the IP of the ingress address
// (so that peers see the address they know, with another port).
func listenDial(ingress net.Addr) (*net.UDPConn, error) {
	ua, ok := ingress.(*net.UDPAddr)
	if !ok {
		return nil, fmt.Errorf("gateway: ingress address %v is not UDP", ingress)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: ua.IP, Zone: ua.Zone})
	if err != nil {
		return nil, fmt.Errorf("gateway: listen for dialing: %w", err)
	}
	return conn, nil
}

func closeAll(conns []*net.UDPConn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// attachSteering attaches steeringProgram to the SO_REUSEPORT group of
// conn.
func attachSteering(conn *net.UDPConn, n int) error {
	prog, err := steeringProgram(n)
	if err != nil {
		return err
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
			&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	}); err != nil {
		return err
	}
	return serr
}

// sizeBuffers asks for udpBufferSize in each direction of every socket,
// forcing it past net.core.rmem_max/wmem_max when the process may
// (CAP_NET_ADMIN), and logs once and clearly when the kernel capped them.
func sizeBuffers(conns []*net.UDPConn, log *slog.Logger) {
	rcv, snd := udpBufferSize, udpBufferSize
	for _, conn := range conns {
		r, s := sizeBuffer(conn)
		rcv, snd = min(rcv, r), min(snd, s)
	}
	if rcv < udpBufferSize || snd < udpBufferSize {
		log.Warn("gateway: the kernel capped the UDP socket buffers below what QUIC needs for full throughput; "+
			"raise net.core.rmem_max and net.core.wmem_max (sysctl) to at least 7500000",
			logWant, udpBufferSize, logRcvBuf, rcv, logSndBuf, snd)
	}
}

// sizeBuffer sizes conn's buffers and returns the sizes granted.
func sizeBuffer(conn *net.UDPConn) (rcv, snd int) {
	_ = conn.SetReadBuffer(udpBufferSize)
	_ = conn.SetWriteBuffer(udpBufferSize)
	raw, err := conn.SyscallConn()
	if err != nil {
		return 0, 0
	}
	// Linux reports twice the size it granted (the rest is its overhead).
	rcv = forceBuffer(raw, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF) / 2
	snd = forceBuffer(raw, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF) / 2
	return rcv, snd
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
