package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strait-mesh/strait/proxy/session"
)

// Reasons of strait_proxy_shed_connections_total: why an outbound
// connection was reset without reaching a destination when its connect
// budget (Config.ConnectTimeout, counted from the kernel's accept) ran out.
const (
	// shedStale: the connection was older than the budget before the
	// proxy made any attempt for it (it waited in the listener's accept
	// queue, or for the CPU, while the proxy was stopped or starved).
	shedStale = "stale"
	// shedDeadline: the budget ran out during or between attempts; no
	// attempt is started or retried past it.
	shedDeadline = "deadline"
)

// shedReasons are the reasons of strait_proxy_shed_connections_total.
func shedReasons() []string { return []string{shedStale, shedDeadline} }

// acceptedAt returns when the kernel accepted c (completed its three-way
// handshake), so that the time c waited in the listener's accept queue
// counts against its connect budget: now less the time since c last sent
// data, which for a connection the proxy has written nothing to yet is the
// time since the kernel created it (TCP_INFO tcpi_last_data_sent, in
// milliseconds). A connection whose age cannot be read (not TCP) counts as
// accepted now.
func acceptedAt(c net.Conn, now time.Time) time.Time {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return now
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return now
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || ierr != nil {
		return now
	}
	return now.Add(-time.Duration(info.Last_data_sent) * time.Millisecond)
}

// connectBudget returns the context the attempts of an outbound connection
// accepted at accepted run under: its deadline is accepted plus
// Config.ConnectTimeout.
func (p *Proxy) connectBudget(ctx context.Context, accepted time.Time) (context.Context, context.CancelFunc) {
	return context.WithDeadline(ctx, accepted.Add(p.cfg.ConnectTimeout))
}

// budgetSpent reports whether the attempts of an outbound connection ended
// because its connect budget ran out (budget's deadline; not the proxy's
// own ctx, whose end is a drain, not shedding).
func budgetSpent(ctx, budget context.Context) bool {
	return ctx.Err() == nil && budget.Err() != nil
}

// budgetWatch makes a session stream that still waits for its
// destination's answer when budget's deadline passes give up (a stream
// counts as connected only once answered), so that the connection is shed
// instead of waiting on a stalled session. The returned func stops the
// watch.
func budgetWatch(budget context.Context, conn net.Conn) (stop func() bool) {
	st, ok := conn.(*session.Stream)
	if !ok || !st.Tentative() {
		return func() bool { return false }
	}
	return context.AfterFunc(budget, func() {
		if errors.Is(budget.Err(), context.DeadlineExceeded) {
			st.GiveUp()
		}
	})
}

// shed resets an outbound connection whose connect budget ran out, counts it
// under reason and logs it (WARN, rate limited: a stalled proxy sheds many
// at once). Its caller has most likely given up: a proxy that goes on
// dialing, handshaking and retrying for such callers after a stall spends
// its CPU on them while new connections wait behind them and time out in
// turn.
func (p *Proxy) shed(log *slog.Logger, app net.Conn, reason string, accepted time.Time) {
	abort(app)
	p.metrics.connections.WithLabelValues(dirOutbound, resultShed).Inc()
	p.metrics.shed.WithLabelValues(reason).Inc()
	p.shedLog.Warn(log, "connection dropped: it waited longer than the connect timeout for a destination",
		logReason, reason, logAge, time.Since(accepted), logConnectTimeout, p.cfg.ConnectTimeout)
}
