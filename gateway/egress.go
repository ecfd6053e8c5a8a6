package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/gateway/relay"
	"github.com/strait-mesh/strait/gateway/sni"
	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// acceptEgress accepts the cluster's proxies' connections until the egress
// listener closes. ctx is the run context.
func (g *Gateway) acceptEgress(ctx context.Context) error {
	for {
		c, err := g.egressLn.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			g.log.Warn("gateway: egress accept", logErr, err)
			continue
		}
		g.wg.Go(func() { g.handleEgress(ctx, c) })
	}
}

// handleEgress routes one proxy connection by the SNI of its ClientHello.
func (g *Gateway) handleEgress(ctx context.Context, c *net.TCPConn) {
	start := time.Now()
	g.active.add()
	defer g.active.done()
	live := g.liveNow()
	name, hello, err := sni.Peek(c, live.header)
	if err != nil {
		if reason, ok := resetReason(err); ok {
			g.resetEgress(c, reason, err)
			return
		}
		g.refuse(c, straitv1.StreamCode_STREAM_CODE_BAD_REQUEST, "", err)
		return
	}
	sn, err := federation.ParseServiceName(name)
	if err != nil {
		g.refuse(c, straitv1.StreamCode_STREAM_CODE_BAD_REQUEST, name, err)
		return
	}
	cands, code := g.candidates(g.cfg.Snapshots.Snapshot(), sn)
	if len(cands) > 0 {
		var st *stream
		if st, code = g.hedgedAttempts(ctx, cands, sn, name, hello, live); st != nil {
			g.m.setup.WithLabelValues(dirEgress).Observe(time.Since(start).Seconds())
			g.relayEgress(c, st, name, start)
			return
		}
	}
	g.refuse(c, code, name, nil)
}

// attemptResult is the outcome of one attempt of hedgedAttempts.
type attemptResult struct {
	st   *stream
	code straitv1.StreamCode
	err  error
}

// hedgedAttempts tries the candidates in order and returns the first stream
// accepted, or the code of the last failure. An attempt that has not
// finished after hedgeDelay (a silent, partitioned peer whose connection
// still looks alive) does not hold the connection up: the next candidate
// starts beside it. Nothing but a ClientHello has been sent, so racing two
// destinations duplicates no request; a losing attempt runs to its own end
// in the background (so that a dead peer is still marked failed) and its
// stream, if accepted late, is abandoned.
func (g *Gateway) hedgedAttempts(ctx context.Context, cands []candidate, sn federation.ServiceName, name string, hello []byte, live *liveConfig) (*stream, straitv1.StreamCode) {
	results := make(chan attemptResult, len(cands))
	started, pending := 0, 0
	startNext := func() {
		i := started
		cand := cands[i]
		started++
		pending++
		g.wg.Go(func() {
			st, code, err := g.attempt(ctx, cand, sn, name, hello, dialWait(live, i == len(cands)-1))
			g.m.streams.WithLabelValues(dirEgress, cand.cluster, resultLabel(code, err)).Inc()
			if err != nil || code != straitv1.StreamCode_STREAM_CODE_ACCEPTED {
				g.log.Debug("gateway: egress attempt failed", logServerName, name, logPeerCluster, cand.cluster, logPeer, cand.rec.GetId(), logAttempt, i, logCode, tunnel.CodeName(code), logErr, err)
			}
			results <- attemptResult{st: st, code: code, err: err}
		})
	}
	hedge := time.NewTimer(hedgeDelay(live))
	defer hedge.Stop()
	code := straitv1.StreamCode_STREAM_CODE_INTERNAL
	startNext()
	for pending > 0 {
		select {
		case r := <-results:
			pending--
			if r.err == nil && r.code == straitv1.StreamCode_STREAM_CODE_ACCEPTED {
				g.abandonLosers(results, pending)
				return r.st, r.code
			}
			code = r.code
			if pending == 0 && started < len(cands) {
				startNext()
				hedge.Reset(hedgeDelay(live))
			}
		case <-hedge.C:
			if started < len(cands) {
				startNext()
				hedge.Reset(hedgeDelay(live))
			}
		}
	}
	return nil, code
}

// abandonLosers waits in the background for the n attempts still running
// and abandons any stream they get accepted.
func (g *Gateway) abandonLosers(results <-chan attemptResult, n int) {
	if n == 0 {
		return
	}
	g.wg.Go(func() {
		for range n {
			if r := <-results; r.st != nil {
				r.st.CancelWrite(StreamErrAbandoned)
				r.st.CancelRead(StreamErrAbandoned)
				r.st.pc.release()
			}
		}
	})
}

// hedgeDelay is how long an attempt runs alone before the next candidate
// starts beside it: a quarter of the dial timeout, at least 50ms.
func hedgeDelay(live *liveConfig) time.Duration {
	return max(live.dial/4, 50*time.Millisecond)
}

func resultLabel(code straitv1.StreamCode, err error) string {
	if err != nil && code == straitv1.StreamCode_STREAM_CODE_INTERNAL {
		var re *tunnel.RefusedError
		if !errors.As(err, &re) {
			return resultFailed
		}
	}
	return tunnel.CodeName(code)
}

// refuse answers a proxy with the refusal alert and closes its connection.
func (g *Gateway) refuse(c *net.TCPConn, code straitv1.StreamCode, name string, err error) {
	g.m.refusals.WithLabelValues(tunnel.CodeName(code)).Inc()
	g.m.streamLog.Warn(g.log, "gateway: egress refused", logServerName, name, logPeerAddr, c.RemoteAddr().String(), logRefusalReason, tunnel.CodeName(code), logErr, err)
	_ = c.SetWriteDeadline(time.Now().Add(refusalLinger))
	_ = tunnel.WriteRefusal(c, code)
	lingerClose(c)
}

// Reasons of resetEgress, values of the code label of
// strait_gateway_egress_refusals_total beside the StreamCode names.
const (
	// resetNotTLS: the first byte is not that of a TLS handshake record
	// (a plaintext client, such as curl http:// from a pod without a
	// sidecar, whose connection to a ServiceImport's address lands here).
	resetNotTLS = "not_tls"
	// resetMalformedHello: a TLS record header, but no ClientHello in it.
	resetMalformedHello = "malformed_hello"
	// resetNoSNI: a ClientHello without a server name.
	resetNoSNI = "no_sni"
	// resetHelloTimeout: no complete ClientHello within the header
	// timeout (a client waiting for the server to speak first).
	resetHelloTimeout = "hello_timeout"
	// resetClosed: the client closed or reset the connection before its
	// ClientHello was complete.
	resetClosed = "closed_before_hello"
)

// egressResetReasons are the reasons of resetEgress.
func egressResetReasons() []string {
	return []string{resetNotTLS, resetMalformedHello, resetNoSNI, resetHelloTimeout, resetClosed}
}

// resetReason says why a connection whose first record sni.Peek could not
// read as a ClientHello naming a server is reset. Every error of Peek has
// a reason; ok false is kept for an error it does not know.
func resetReason(err error) (reason string, ok bool) {
	switch {
	case errors.Is(err, sni.ErrNotHandshake):
		return resetNotTLS, true
	case errors.Is(err, sni.ErrMalformed), errors.Is(err, sni.ErrRecordTooLarge):
		return resetMalformedHello, true
	case errors.Is(err, sni.ErrNoServerName):
		return resetNoSNI, true
	case errors.Is(err, os.ErrDeadlineExceeded):
		return resetHelloTimeout, true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return resetClosed, true
	}
	return "", false
}

// resetEgress refuses a connection that does not start with a proxy's TLS
// ClientHello naming a service: counts it under reason, logs it (WARN,
// rate limited) and resets it (RST, SO_LINGER 0). Such a client (a pod
// without a sidecar, or anything else that is not a Strait proxy) would
// read a TLS alert as garbage and a FIN as an empty answer; a reset is an
// immediate, unambiguous "connection reset by peer".
func (g *Gateway) resetEgress(c *net.TCPConn, reason string, err error) {
	g.m.refusals.WithLabelValues(reason).Inc()
	g.m.streamLog.Warn(g.log, "gateway: egress reset a connection that is not a proxy's TLS", logPeerAddr, c.RemoteAddr().String(),
		logRefusalReason, reason, logErr, err)
	_ = c.SetLinger(0)
	_ = c.Close()
}

// Bounds of lingerClose.
const (
	refusalLinger  = time.Second
	refusalDiscard = 256 << 10
)

// lingerClose half-closes c and discards what the proxy still sends for a
// moment before closing: closing a socket with unread data sends RST, which
// could destroy the refusal before the proxy reads it.
func lingerClose(c *net.TCPConn) {
	_ = c.CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(refusalLinger))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, refusalDiscard))
	_ = c.Close()
}

// relayEgress relays an accepted stream and counts it. Its log line names
// the proxy's connection (remote_addr), which the proxy's own line names
// too (local_addr), so that one connection can be followed across hops.
func (g *Gateway) relayEgress(c *net.TCPConn, st *stream, name string, start time.Time) {
	defer st.pc.release()
	act := g.m.active.WithLabelValues(dirEgress)
	act.Inc()
	defer act.Dec()
	// The debug line formats addresses and times: only when it is logged.
	debug := g.log.Enabled(context.Background(), slog.LevelDebug)
	relayed := time.Now()
	res := g.relay.Pipe(relay.TCP(c), relay.Stream(st.Stream, StreamErrReset), relay.Counters{AToB: g.m.bytesSent, BToA: g.m.bytesReceived, Times: debug})
	if !debug {
		return
	}
	g.log.Debug("gateway: egress stream ended", logRemote, c.RemoteAddr().String(), logServerName, name,
		logPeerAddr, st.pc.RemoteAddr().String(), logStream, int64(st.StreamID()), logSent, res.AToB, logReceived, res.BToA,
		logDuration, time.Since(start), logTimes, relayTimes(relayed, res.AToBFirst, res.AToBLast, res.BToAFirst, res.BToALast), logErr, res.Err)
}

// dialWait is how long a connection waits for a remote gateway being
// dialed: the whole dial timeout for the last candidate, a third of it when
// another candidate could serve sooner.
func dialWait(live *liveConfig, last bool) time.Duration {
	if last {
		return live.dial
	}
	return live.dial / 3
}

// stream is an accepted stream and the pooled connection it counts on.
type stream struct {
	*quic.Stream
	pc *pconn
}

// attempt opens a stream to cand and sends the header with the buffered
// ClientHello. It returns the stream once the remote gateway accepted it and
// the destination's first byte arrived; otherwise the stream is canceled and
// the code says why (INTERNAL with an error for transport failures). A
// DRAINING reply retires the connection.
func (g *Gateway) attempt(ctx context.Context, cand candidate, sn federation.ServiceName, name string, hello []byte, wait time.Duration) (*stream, straitv1.StreamCode, error) {
	for try := 0; ; try++ {
		pc, err := g.pool.conn(ctx, cand.peer, wait)
		if err != nil {
			return nil, straitv1.StreamCode_STREAM_CODE_INTERNAL, err
		}
		opened := time.Now()
		st, code, err := g.openStream(ctx, pc.Conn, g.header(sn, name, cand.cluster), hello)
		g.noteLink(cand, opened, code, err)
		if err == nil && code == straitv1.StreamCode_STREAM_CODE_ACCEPTED {
			return &stream{Stream: st, pc: pc}, code, nil
		}
		pc.release()
		switch {
		case code == straitv1.StreamCode_STREAM_CODE_DRAINING:
			cand.peer.drainedConn(pc)
		case err != nil && isReconnect(err) && try == 0:
			// The connection's life ended (a certificate expired, its
			// maximum age): nothing was relayed, retry on a new one.
			g.pool.reconnect(cand.peer, pc)
			continue
		case err != nil:
			g.pool.noteStreamFailure(cand.peer, pc)
		}
		return nil, code, err
	}
}

func (g *Gateway) openStream(ctx context.Context, conn *quic.Conn, hdr *straitv1.StreamHeader, hello []byte) (*quic.Stream, straitv1.StreamCode, error) {
	internal := straitv1.StreamCode_STREAM_CODE_INTERNAL
	live := g.liveNow()
	octx, cancel := context.WithTimeout(ctx, live.dial)
	st, err := conn.OpenStreamSync(octx)
	cancel()
	if err != nil {
		return nil, internal, err
	}
	buf, err := tunnel.AppendHeader(make([]byte, 0, 256+len(hello)), hdr)
	if err != nil {
		st.CancelWrite(StreamErrAbandoned)
		st.CancelRead(StreamErrAbandoned)
		return nil, internal, err
	}
	buf = append(buf, hello...)
	deadline := time.Now().Add(live.dial + live.header)
	_ = st.SetDeadline(deadline)
	code, err := exchange(st, buf)
	if err != nil || code != straitv1.StreamCode_STREAM_CODE_ACCEPTED {
		st.CancelWrite(StreamErrAbandoned)
		st.CancelRead(StreamErrAbandoned)
		return nil, code, err
	}
	_ = st.SetDeadline(time.Time{})
	return st, code, nil
}

// exchange writes the header and ClientHello, reads the reply and waits for
// the destination's first byte, all under the stream's deadline.
func exchange(st *quic.Stream, buf []byte) (straitv1.StreamCode, error) {
	internal := straitv1.StreamCode_STREAM_CODE_INTERNAL
	if _, err := st.Write(buf); err != nil {
		return internal, err
	}
	rep, err := tunnel.ReadReply(st, 0)
	if err != nil {
		return internal, err
	}
	if err := tunnel.Err(rep); err != nil {
		return rep.GetCode(), err
	}
	var first [1]byte
	if _, err := st.Peek(first[:]); err != nil {
		return internal, err
	}
	return straitv1.StreamCode_STREAM_CODE_ACCEPTED, nil
}

// header is the stream header for name, sent to a gateway of cluster.
func (g *Gateway) header(sn federation.ServiceName, name, cluster string) *straitv1.StreamHeader {
	return &straitv1.StreamHeader{
		Service:       sn.Service.Name,
		Namespace:     sn.Service.Namespace,
		Port:          uint32(sn.Port),
		SourceCluster: g.cfg.Cluster,
		TargetCluster: cluster,
		ServerName:    name,
	}
}

// relayTimes is the log value of a relay's timing: when, after it began
// (at start), the first and last bytes were sent and received, in
// milliseconds ("-" for none).
func relayTimes(start, sentFirst, sentLast, recvFirst, recvLast time.Time) string {
	ms := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return strconv.FormatInt(t.Sub(start).Milliseconds(), 10)
	}
	return "sent " + ms(sentFirst) + ".." + ms(sentLast) + " received " + ms(recvFirst) + ".." + ms(recvLast)
}
