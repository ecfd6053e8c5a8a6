// Package wan is Strait's WAN emulator for end-to-end tests: a userspace relay
// that stands in front of a cluster's gateways the way a cloud load balancer
// does, and adds one-way delay, jitter and loss to what it forwards. It exists
// because the kernels Strait is tested on may lack the netem qdisc.
//
// A [Link] listens on one address for TCP and UDP and forwards to a set of
// backends:
//
//   - UDP is relayed per client address (a flow), with idle expiry. Each
//     datagram is delayed by Delay ± Jitter and dropped with probability Loss.
//     A flow whose backend answers with ICMP port unreachable is closed, so the
//     next datagram picks another backend (a stand-in for LB health checks).
//   - TCP connections are accepted, a backend is dialed (the next one is tried
//     when a dial fails), and the bytes are relayed in chunks, each delayed by
//     Delay ± Jitter while keeping the stream in order. The relay's kernel
//     completes the client's handshake at once, so the first bytes of a new
//     connection are also held for one emulated round trip: a new
//     connection's time to first byte is two round trips, as across a real
//     WAN. A backend that refuses shows to the client as a reset after the
//     connect, as behind a proxying load balancer. Loss does not apply to TCP
//     (the kernel's retransmissions would hide it anyway).
//   - Partition drops every datagram in both directions and stops TCP: in the
//     default [Blackhole] mode, established connections stall and new ones are
//     accepted but carry no byte until Heal, like packets lost in a cut
//     network; in [Refuse] mode, established connections are reset and new
//     ones are reset on accept, like a network that answers with RST.
//
// Delays are applied by a timer queue, so the emulator's own processing adds
// far less than a millisecond; with Jitter 0 the order of datagrams is kept.
//
// A Link serves from [Link.Run] until its context ends; it can be controlled
// in process ([Link.Partition], [Link.Heal], [Link.SetShape]) or, when it runs
// as a separate process (cmd/strait-wan, for instance inside a network
// namespace), over HTTP with [Link.ControlHandler] and [Control]. The sockets
// are opened through a [Network], so a test can place a link inside a network
// namespace without a separate process.
//
// Example:
//
//	link, err := wan.NewLink(wan.LinkConfig{
//		Listen:   "10.77.0.128:8443",
//		Backends: []string{"10.77.2.10:8443", "10.77.2.11:8443"},
//		Delay:    15 * time.Millisecond, // one way: adds 30 ms to the RTT
//		Jitter:   time.Millisecond,
//		Loss:     0.01,
//	})
//	if err != nil {
//		return err
//	}
//	go link.Run(ctx)
//	link.Partition()
//	link.Heal()
package wan
