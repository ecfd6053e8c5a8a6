package gateway

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/net/bpf"
)

// TestSteeringProgram: the program picks the socket named by the
// destination connection ID of a short-header packet and by the source
// connection ID of a long-header one, modulo the number of sockets, and
// socket 0 for what it cannot read.
func TestSteeringProgram(t *testing.T) {
	cid := func(first byte) []byte { return []byte{first, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7} }
	long := func(dcid, scid []byte) []byte {
		b := []byte{0xc3, 0, 0, 0, 1, byte(len(dcid))}
		b = append(b, dcid...)
		b = append(b, byte(len(scid)))
		b = append(b, scid...)
		return append(b, 0x00, 0x41, 0x00) // token length, length...
	}
	short := func(dcid []byte) []byte { return append([]byte{0x43}, append(dcid, 0x99, 0x98)...) }
	for _, tt := range []struct {
		name   string
		packet []byte
		n      int
		want   uint32
	}{
		{"short header, 2 sockets", short(cid(5)), 2, 1},
		{"short header, 4 sockets", short(cid(6)), 4, 2},
		{"short header, 1 socket", short(cid(7)), 1, 0},
		{"long header by the source ID, 2 sockets", long(cid(0xfe), cid(3)), 2, 1},
		{"long header by the source ID, 4 sockets", long(cid(0xfe), cid(3)), 4, 3},
		{"long header with a 20-byte destination ID", long(make([]byte, 20), cid(2)), 4, 2},
		{"long header with an empty destination ID", long(nil, cid(1)), 4, 1},
		{"long header with an empty source ID", long(cid(3), nil), 4, 0},
		{"truncated short header", []byte{0x43}, 4, 0},
		{"truncated long header", long(cid(3), cid(3))[:8], 4, 0},
		{"empty datagram", nil, 4, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := runSteering(t, tt.n, tt.packet); got != tt.want {
				t.Errorf("socket %d, want %d", got, tt.want)
			}
		})
	}
	for _, n := range []int{0, MaxIngressSockets + 1} {
		if _, err := steeringProgram(n); err == nil {
			t.Errorf("steering program for %d sockets: no error", n)
		}
	}
}

// TestSteeringRealHandshake: the first datagram quic-go sends when a
// pool slot dials (an Initial carrying the slot's source connection ID)
// is steered to that slot modulo the number of sockets.
func TestSteeringRealHandshake(t *testing.T) {
	for slot := range 5 {
		// A server socket per slot: the last dial's retransmissions must
		// not be read as this one's.
		server, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		tr := &quic.Transport{Conn: conn, ConnectionIDGenerator: slotConnIDs{slot: byte(slot)}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = tr.Dial(ctx, server.LocalAddr(), &tls.Config{ServerName: "x", NextProtos: []string{"strait-steering-test"}}, &quic.Config{})
		}()
		buf := make([]byte, 2048)
		_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := server.ReadFromUDP(buf)
		cancel()
		<-done
		_ = tr.Close()
		_ = conn.Close()
		_ = server.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, sockets := range []int{1, 2, 3, 4} {
			if got, want := runSteering(t, sockets, buf[:n]), uint32(slot%sockets); got != want {
				t.Errorf("slot %d's Initial with %d sockets: socket %d, want %d", slot, sockets, got, want)
			}
		}
	}
}

// FuzzSteeringProgram: whatever a datagram holds, the program names one of
// the sockets.
func FuzzSteeringProgram(f *testing.F) {
	f.Add([]byte{0x43, 7, 1, 2, 3}, uint8(4))
	f.Add([]byte{0xc3, 0, 0, 0, 1, 2, 9, 9, 1, 5}, uint8(3))
	f.Fuzz(func(t *testing.T, packet []byte, n uint8) {
		sockets := int(n%MaxIngressSockets) + 1
		if got := runSteering(t, sockets, packet); got >= uint32(sockets) {
			t.Fatalf("socket %d of %d", got, sockets)
		}
	})
}

// runSteering runs the steering program for n sockets on a UDP payload in
// x/net/bpf's interpreter, which, like the kernel, ends a program that
// loads past the end of the packet with 0.
func runSteering(t testing.TB, n int, payload []byte) uint32 {
	t.Helper()
	vm, err := bpf.NewVM(steeringInsns(n))
	if err != nil {
		t.Fatal(err)
	}
	got, err := vm.Run(payload)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(got)
}
