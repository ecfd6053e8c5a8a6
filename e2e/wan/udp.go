package wan

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
)

// udpFlow relays the datagrams of one client address to one backend.
type udpFlow struct {
	client  net.Addr
	src     netip.Addr
	key     string
	backend string
	conn    net.Conn
	last    atomic.Int64 // unix nanoseconds of the last datagram either way
}

func (f *udpFlow) touch() { f.last.Store(time.Now().UnixNano()) }

func (l *Link) udpLoop(ctx context.Context) {
	buf := make([]byte, l.cfg.MaxDatagram)
	for {
		n, addr, err := l.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			l.log.Debug("wan udp read failed", logError, err)
			continue
		}
		src := addrOf(addr)
		if l.current().blocked(src) {
			l.stats.udpDroppedPartition.Add(1)
			continue
		}
		f, err := l.flow(ctx, addr)
		if err != nil {
			l.log.Warn("wan udp flow failed", logClient, addr.String(), logError, err)
			continue
		}
		f.touch()
		at, lost := l.releaseAt(Forward, true, src)
		if lost {
			l.stats.udpDroppedLoss.Add(1)
			continue
		}
		data := append([]byte(nil), buf[:n]...)
		l.deliver(at, func() {
			if l.current().blocked(src) {
				l.stats.udpDroppedPartition.Add(1)
				return
			}
			if _, err := f.conn.Write(data); err == nil {
				l.stats.udpForward.Add(1)
			}
		})
	}
}

// deliver runs fn at at, right away when at has passed.
func (l *Link) deliver(at time.Time, fn func()) {
	if !at.After(time.Now()) {
		fn()
		return
	}
	l.sched.add(at, fn)
}

// flow returns the flow of client, creating it on the next backend.
func (l *Link) flow(ctx context.Context, client net.Addr) (*udpFlow, error) {
	key := client.String()
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.flows[key]; ok {
		return f, nil
	}
	select {
	case <-l.done:
		return nil, net.ErrClosed
	default:
	}
	var lastErr error
	for _, b := range l.pickBackends() {
		conn, err := l.cfg.Net.DialContext(ctx, "udp", b)
		if err != nil {
			lastErr = err
			continue
		}
		f := &udpFlow{client: client, src: addrOf(client), key: key, backend: b, conn: conn}
		l.flows[key] = f
		l.stats.udpFlows.Add(1)
		l.goTrack(func() { l.flowLoop(ctx, f) })
		return f, nil
	}
	return nil, lastErr
}

func (l *Link) removeFlow(f *udpFlow) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.flows[f.key] == f {
		delete(l.flows, f.key)
		l.stats.udpFlows.Add(-1)
	}
	f.conn.Close()
}

// flowLoop relays the backend's replies of one flow to its client.
func (l *Link) flowLoop(ctx context.Context, f *udpFlow) {
	defer l.removeFlow(f)
	buf := make([]byte, l.cfg.MaxDatagram)
	for {
		n, err := f.conn.Read(buf)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				// The backend is gone: drop the flow so the client's next
				// datagram opens one to another backend.
				l.log.Info("wan udp backend refused", logClient, f.key, logBackend, f.backend)
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		f.touch()
		if l.current().blocked(f.src) {
			l.stats.udpDroppedPartition.Add(1)
			continue
		}
		at, lost := l.releaseAt(Reverse, true, f.src)
		if lost {
			l.stats.udpDroppedLoss.Add(1)
			continue
		}
		data := append([]byte(nil), buf[:n]...)
		l.deliver(at, func() {
			if l.current().blocked(f.src) {
				l.stats.udpDroppedPartition.Add(1)
				return
			}
			if _, err := l.pc.WriteTo(data, f.client); err == nil {
				l.stats.udpReverse.Add(1)
			}
		})
	}
}

// expireLoop closes flows idle for longer than UDPIdleTimeout.
func (l *Link) expireLoop(ctx context.Context) {
	every := min(max(l.cfg.UDPIdleTimeout/4, 10*time.Millisecond), time.Second)
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		cutoff := time.Now().Add(-l.cfg.UDPIdleTimeout).UnixNano()
		var idle []*udpFlow
		l.mu.Lock()
		for _, f := range l.flows {
			if f.last.Load() < cutoff {
				idle = append(idle, f)
			}
		}
		l.mu.Unlock()
		for _, f := range idle {
			l.removeFlow(f)
		}
	}
}
