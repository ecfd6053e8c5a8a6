package gateway

import (
	"crypto/rand"
	"fmt"

	"github.com/quic-go/quic-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// connIDLen is the length of the connection IDs the gateway's transports
// generate: the first byte names a socket (see slotConnIDs), the other 7
// are random.
const connIDLen = 8

// slotConnIDs generates the connection IDs of the transport of socket
// slot: random, with the slot as first byte.
//
// The ingress steers each packet to a socket of its SO_REUSEPORT group by a
// connection ID it carries (steeringProgram): a short-header packet by its
// destination ID, which the ingress chose (the socket's own slot), a
// long-header packet (the handshake) by its source ID, which the dialer
// chose (the slot of the pool that dials it). So every packet of a
// connection reaches the transport that holds it, and a peer's slot i
// lands on ingress socket i modulo the number of sockets: the connections
// of a sharded pool are read by as many goroutines as the ingress has
// sockets.
type slotConnIDs struct{ slot byte }

var _ quic.ConnectionIDGenerator = slotConnIDs{}

func (g slotConnIDs) GenerateConnectionID() (quic.ConnectionID, error) {
	b := make([]byte, connIDLen)
	if _, err := rand.Read(b[1:]); err != nil {
		return quic.ConnectionID{}, err
	}
	b[0] = g.slot
	return quic.ConnectionIDFromBytes(b), nil
}

func (g slotConnIDs) ConnectionIDLen() int { return connIDLen }

// steeringProgram is the classic BPF program that picks, for each UDP
// datagram, the socket of an SO_REUSEPORT group of n sockets: the kernel
// runs it on the UDP payload and takes its result as the index of the
// socket (in the order they were bound).
//
//   - Short header (first bit 0): the first byte of the destination
//     connection ID (byte 1), modulo n.
//   - Long header: the first byte of the source connection ID (after the
//     version, the destination ID's length and the destination ID), modulo
//     n; socket 0 when the source ID is empty.
//
// A datagram too short to hold those bytes ends the program, which then
// returns 0: socket 0. RFC 9000, section 17 gives the header layouts.
func steeringProgram(n int) ([]unix.SockFilter, error) {
	if n < 1 || n > MaxIngressSockets {
		return nil, fmt.Errorf("gateway: %d sockets to steer to, want 1 to %d", n, MaxIngressSockets)
	}
	raw, err := bpf.Assemble(steeringInsns(n))
	if err != nil {
		return nil, fmt.Errorf("gateway: steering program: %w", err)
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

// steeringInsns is steeringProgram before assembly.
func steeringInsns(n int) []bpf.Instruction {
	return []bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: 0, Size: 1},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x80, SkipTrue: 2}, // long header: 4
		/* 2 */ bpf.LoadAbsolute{Off: 1, Size: 1}, // short: first byte of the destination ID
		/* 3 */ bpf.Jump{Skip: 5}, // to 9
		/* 4 */ bpf.LoadAbsolute{Off: 5, Size: 1}, // destination ID length
		/* 5 */ bpf.TAX{},
		/* 6 */ bpf.LoadIndirect{Off: 6, Size: 1}, // source ID length
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 3}, // empty: 11
		/* 8 */ bpf.LoadIndirect{Off: 7, Size: 1}, // first byte of the source ID
		/* 9 */ bpf.ALUOpConstant{Op: bpf.ALUOpMod, Val: uint32(n)},
		/* 10 */ bpf.RetA{},
		/* 11 */ bpf.RetConstant{Val: 0},
	}
}
