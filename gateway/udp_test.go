package gateway

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestUDPBuffers(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	conns, err := listenIngress("127.0.0.1:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(conns)
	sizeBuffers(conns, log)
	warned := strings.Contains(out.String(), "capped the UDP socket buffers")
	for i, conn := range conns {
		raw, _ := conn.SyscallConn()
		var rcv int
		_ = raw.Control(func(fd uintptr) { rcv, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
		t.Logf("socket %d: receive buffer granted %d KiB; warning logged: %v", i, rcv/2/1024, warned)
		if got := rcv / 2; (got < udpBufferSize) != warned {
			t.Fatalf("socket %d: granted %d bytes, warning logged %v: the warning must match the cap", i, got, warned)
		}
	}
}

// TestListenIngressInUse: an ingress address held by another socket is an
// error, also when the holder itself allows SO_REUSEPORT (another
// gateway's group): the ingress never silently shares its port.
func TestListenIngressInUse(t *testing.T) {
	for _, n := range []int{1, 2} {
		held, err := listenIngress("127.0.0.1:0", 2)
		if err != nil {
			t.Fatal(err)
		}
		addr := held[0].LocalAddr().String()
		conns, err := listenIngress(addr, n)
		if err == nil {
			closeAll(conns)
			t.Errorf("%d sockets on %s, held by another group: bound, want address in use", n, addr)
		} else if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("%d sockets on %s, held by another group: %v, want address in use", n, addr, err)
		}
		closeAll(held)
		// Released, the address binds again (a restart).
		conns, err = listenIngress(addr, n)
		if err != nil {
			t.Fatalf("%d sockets on the released %s: %v", n, addr, err)
		}
		for _, c := range conns {
			if got := c.LocalAddr().String(); got != addr {
				t.Errorf("socket on %s, want %s", got, addr)
			}
		}
		closeAll(conns)
	}
	if _, err := listenDial(&net.TCPAddr{}); err == nil {
		t.Error("dial socket for a TCP ingress address: no error")
	}
}
