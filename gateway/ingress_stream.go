package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/gateway/probe"
	"github.com/strait-mesh/strait/gateway/relay"
	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// handleIngress serves one stream: header, admission, endpoint, relay.
func (g *Gateway) handleIngress(ctx context.Context, peer remote, st *quic.Stream) {
	start := time.Now()
	g.active.add()
	defer g.active.done()
	if g.draining.Load() {
		g.refuseStream(peer, st, straitv1.StreamCode_STREAM_CODE_DRAINING, "gateway is draining")
		return
	}
	live := g.liveNow()
	hdr, err := tunnel.ReadHeader(st, live.header)
	if err != nil {
		g.badHeader(peer, st, err)
		return
	}
	if probe.IsProbe(hdr) {
		g.serveProbe(peer, st, hdr, live)
		return
	}
	key, code, msg := g.admit(g.cfg.Snapshots.Snapshot(), peer, hdr)
	if code != straitv1.StreamCode_STREAM_CODE_ACCEPTED {
		g.refuseStream(peer, st, code, msg)
		return
	}
	ep, err := g.dialEndpoint(ctx, live, key, hdr.GetPort())
	if err != nil {
		g.refuseStream(peer, st, straitv1.StreamCode_STREAM_CODE_NO_ENDPOINT, err.Error())
		return
	}
	if err := tunnel.WriteReply(st, &straitv1.StreamReply{Code: straitv1.StreamCode_STREAM_CODE_ACCEPTED}); err != nil {
		relay.TCP(ep).Abort()
		st.CancelRead(StreamErrReset)
		st.CancelWrite(StreamErrReset)
		g.m.streams.WithLabelValues(dirIngress, peer.cluster, resultFailed).Inc()
		return
	}
	g.m.streams.WithLabelValues(dirIngress, peer.cluster, tunnel.CodeName(straitv1.StreamCode_STREAM_CODE_ACCEPTED)).Inc()
	g.m.setup.WithLabelValues(dirIngress).Observe(time.Since(start).Seconds())
	act := g.m.active.WithLabelValues(dirIngress)
	act.Inc()
	defer act.Dec()
	// The debug line formats addresses and times: only when it is logged.
	debug := g.log.Enabled(ctx, slog.LevelDebug)
	relayed := time.Now()
	res := g.relay.Pipe(relay.Stream(st, StreamErrReset), relay.TCP(ep), relay.Counters{AToB: g.m.bytesReceived, BToA: g.m.bytesSent, Times: debug})
	if !debug {
		return
	}
	g.log.Debug("gateway: ingress stream ended", logPeer, peer.id.String(), logStream, int64(st.StreamID()),
		logAddr, ep.RemoteAddr().String(), logRemote, ep.LocalAddr().String(), logSent, res.BToA, logReceived, res.AToB,
		logDuration, time.Since(start), logTimes, relayTimes(relayed, res.BToAFirst, res.BToALast, res.AToBFirst, res.AToBLast), logErr, res.Err)
}

// badHeader answers a stream whose header did not arrive or decode. A
// malformed or oversized header is refused with BAD_REQUEST; a stream
// whose header did not arrive in time is reset. The connection stays up.
func (g *Gateway) badHeader(peer remote, st *quic.Stream, err error) {
	if errors.Is(err, tunnel.ErrFrameTooLarge) || errors.Is(err, tunnel.ErrBadFrame) {
		g.refuseStream(peer, st, straitv1.StreamCode_STREAM_CODE_BAD_REQUEST, err.Error())
		return
	}
	g.m.streams.WithLabelValues(dirIngress, peer.cluster, resultFailed).Inc()
	g.m.streamLog.Warn(g.log, "gateway: stream header not received", logPeer, peer.id.String(), logRefusalReason, resultFailed, logErr, err)
	st.CancelRead(StreamErrHeaderTimeout)
	st.CancelWrite(StreamErrHeaderTimeout)
}

// refuseStream replies code, ends the send side and cancels the receive
// side with code as the application error code.
func (g *Gateway) refuseStream(peer remote, st *quic.Stream, code straitv1.StreamCode, msg string) {
	g.m.streams.WithLabelValues(dirIngress, peer.cluster, tunnel.CodeName(code)).Inc()
	g.m.streamLog.Warn(g.log, "gateway: stream refused", logPeer, peer.id.String(), logRefusalReason, tunnel.CodeName(code), logErr, msg)
	_ = st.SetWriteDeadline(time.Now().Add(time.Second))
	_ = tunnel.WriteReply(st, &straitv1.StreamReply{Code: code, Message: msg})
	_ = st.Close()
	st.CancelRead(quic.StreamErrorCode(code))
}

// admit checks a header against the snapshot: well formed, sent by the
// cluster that authenticated (whose gateways, when the snapshot lists them,
// announce the same trust domain), for a service and port this cluster
// exports, to a trust domain allowed to consume it.
func (g *Gateway) admit(snap *federation.Snapshot, peer remote, h *straitv1.StreamHeader) (federation.ServiceKey, straitv1.StreamCode, string) {
	key := federation.ServiceKey{Namespace: h.GetNamespace(), Name: h.GetService()}
	if err := g.validateHeader(h); err != nil {
		return key, straitv1.StreamCode_STREAM_CODE_BAD_REQUEST, err.Error()
	}
	if h.GetSourceCluster() != peer.cluster {
		return key, straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED, fmt.Sprintf("source cluster %q is not the authenticated %q", h.GetSourceCluster(), peer.cluster)
	}
	if td := snap.TrustDomain(peer.cluster); td != "" && td != peer.id.TrustDomain().Name() {
		return key, straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED, fmt.Sprintf("cluster %s belongs to trust domain %s, not %s", peer.cluster, td, peer.id.TrustDomain())
	}
	exp := snap.Export(g.cfg.Cluster, key)
	if exp == nil || h.GetPort() > 65535 || !exportHasPort(exp, uint16(h.GetPort())) {
		return key, straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED, fmt.Sprintf("%s port %d is not exported by %s", key, h.GetPort(), g.cfg.Cluster)
	}
	if !consumerAllowed(exp, g.cfg.TrustDomain, peer.id.TrustDomain()) {
		return key, straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED, fmt.Sprintf("trust domain %s may not consume %s", peer.id.TrustDomain(), key)
	}
	return key, straitv1.StreamCode_STREAM_CODE_ACCEPTED, ""
}

func (g *Gateway) validateHeader(h *straitv1.StreamHeader) error {
	for _, l := range []string{h.GetService(), h.GetNamespace(), h.GetSourceCluster()} {
		if err := federation.ValidateLabel(l); err != nil {
			return err
		}
	}
	if h.GetPort() == 0 || h.GetPort() > 65535 {
		return fmt.Errorf("port %d is not 1-65535", h.GetPort())
	}
	switch t := h.GetTargetCluster(); t {
	case "", federation.AnyCluster, g.cfg.Cluster:
		return nil
	default:
		return fmt.Errorf("stream for cluster %q reached cluster %q", t, g.cfg.Cluster)
	}
}

// dialEndpoint connects to a ready local endpoint of the service, trying
// them in turn (same zone first) within one dial timeout overall. Each
// endpoint's address is resolved now and dialed only where the dial policy
// admits it (see dialGuard).
func (g *Gateway) dialEndpoint(ctx context.Context, live *liveConfig, key federation.ServiceKey, port uint32) (*net.TCPConn, error) {
	eps := g.orderEndpoints(g.cfg.Snapshots.Snapshot().ReadyEndpoints(g.cfg.Cluster, key), port)
	if len(eps) == 0 {
		return nil, fmt.Errorf("%s has no ready endpoint in %s", key, g.cfg.Cluster)
	}
	ctx, cancel := context.WithTimeout(ctx, live.dial)
	defer cancel()
	var errs []error
	for _, ep := range eps {
		c, err := g.dialOne(ctx, live, ep)
		if err == nil {
			return c, nil
		}
		g.log.Debug("gateway: endpoint dial failed", logEndpoint, ep.GetId(), logAddr, ep.GetAddress(), logErr, err)
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("all %d endpoints of %s failed: %w", len(eps), key, errors.Join(errs...))
}
