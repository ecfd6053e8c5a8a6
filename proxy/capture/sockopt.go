package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST of linux/netfilter_ipv6/ip6_tables.h
// (the same value as SO_ORIGINAL_DST, at level SOL_IPV6).
const ip6tSOOriginalDst = 80

// ErrNotRedirected is returned by OriginalDst for a connection that has no
// original destination (it was not redirected).
var ErrNotRedirected = errors.New("capture: connection was not redirected")

// OriginalDst returns where a connection accepted by the transparent
// listener was going before the REDIRECT rule sent it to the proxy
// (SO_ORIGINAL_DST). A connection made to the listener itself returns
// ErrNotRedirected.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("capture: original destination of a %T: %w", c, ErrNotRedirected)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("capture: %w", err)
	}
	local, _ := tc.LocalAddr().(*net.TCPAddr)
	v4 := local != nil && local.IP.To4() != nil
	var dst netip.AddrPort
	var serr error
	err = rc.Control(func(fd uintptr) { dst, serr = originalDst(int(fd), v4) })
	if err == nil {
		err = serr
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			err = ErrNotRedirected
		}
		return netip.AddrPort{}, fmt.Errorf("capture: SO_ORIGINAL_DST: %w", err)
	}
	if local != nil && dst == netip.AddrPortFrom(local.AddrPort().Addr().Unmap(), local.AddrPort().Port()) {
		return netip.AddrPort{}, fmt.Errorf("capture: connection to %s: %w", dst, ErrNotRedirected)
	}
	return dst, nil
}

func originalDst(fd int, v4 bool) (netip.AddrPort, error) {
	if v4 {
		// struct sockaddr_in fits the 20 bytes of an ipv6_mreq.
		m, err := unix.GetsockoptIPv6Mreq(fd, unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			return netip.AddrPort{}, err
		}
		b := m.Multiaddr[:]
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4])), nil
	}
	// struct sockaddr_in6 fits the 32 bytes of an ip6_mtuinfo.
	mi, err := unix.GetsockoptIPv6MTUInfo(fd, unix.SOL_IPV6, ip6tSOOriginalDst)
	if err != nil {
		return netip.AddrPort{}, err
	}
	// Port holds network byte order in memory.
	var pb [2]byte
	binary.NativeEndian.PutUint16(pb[:], mi.Addr.Port)
	port := binary.BigEndian.Uint16(pb[:])
	return netip.AddrPortFrom(netip.AddrFrom16(mi.Addr.Addr), port), nil
}

// DialerControl returns a net.Dialer Control function that sets SO_MARK on
// every socket, so that the capture rules let the proxy's own connections
// through. Setting a mark needs CAP_NET_ADMIN; zero returns nil.
func DialerControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)) }); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("capture: SO_MARK %#x: %w", mark, serr)
		}
		return nil
	}
}
