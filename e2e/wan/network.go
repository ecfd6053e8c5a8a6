package wan

import (
	"context"
	"net"
)

// Network opens the sockets of a link. The default, [HostNetwork], uses the
// calling process's network namespace; e2e/netns hosts implement it for a
// namespace of their own.
type Network interface {
	Listen(ctx context.Context, network, address string) (net.Listener, error)
	ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error)
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// HostNetwork is the Network of the calling process.
type HostNetwork struct{}

// Listen opens a stream listener.
func (HostNetwork) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, network, address)
}

// ListenPacket opens a packet listener.
func (HostNetwork) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	var lc net.ListenConfig
	return lc.ListenPacket(ctx, network, address)
}

// DialContext dials address.
func (HostNetwork) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}
