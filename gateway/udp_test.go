package gateway

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestUDPBuffers(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	conn, err := listenUDP("127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, _ := conn.SyscallConn()
	var rcv int
	_ = raw.Control(func(fd uintptr) { rcv, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
	warned := strings.Contains(out.String(), "capped the UDP socket buffers")
	t.Logf("receive buffer granted %d KiB; warning logged: %v", rcv/2/1024, warned)
	if got := rcv / 2; (got < udpBufferSize) != warned {
		t.Fatalf("granted %d bytes, warning logged %v: the warning must match the cap", got, warned)
	}
}
