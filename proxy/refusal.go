package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"reflect"

	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// The gateway refusal contract (gateway/tunnel): instead of a ServerHello,
// an egress gateway that cannot route a connection writes one plaintext TLS
// alert record
//
//	15 03 03 00 02 02 <224+StreamCode>
//
// and closes. 224-255 is the private-use range of the TLS alert registry.
const (
	recordTypeAlert = 0x15
	recordHeaderLen = 5
	alertLen        = 2
)

// isAlertHeader reports whether b starts with the header of a TLS 1.x alert
// record of two bytes.
func isAlertHeader(b []byte) bool {
	return b[0] == recordTypeAlert && b[1] == 0x03 && b[3] == 0x00 && b[4] == alertLen
}

// refusalConn watches the first record the server sends: if it is a gateway
// refusal, Read fails with a *RouteError; otherwise bytes pass through
// unchanged. It sits between the TCP connection and tls.Client.
type refusalConn struct {
	net.Conn
	sniffed bool
	pending []byte
}

func (c *refusalConn) Read(p []byte) (int, error) {
	if !c.sniffed {
		c.sniffed = true
		if err := c.sniff(); err != nil {
			return 0, err
		}
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// sniff reads the first record header, and the alert body when it is one.
func (c *refusalConn) sniff() error {
	buf := make([]byte, recordHeaderLen+alertLen)
	if n, err := io.ReadFull(c.Conn, buf[:recordHeaderLen]); err != nil {
		if n == 0 {
			return err
		}
		c.pending = buf[:n] // the next Read reports the error
		return nil
	}
	if !isAlertHeader(buf) {
		c.pending = buf[:recordHeaderLen]
		return nil
	}
	// A short body is passed on: the next Read reports the error.
	n, _ := io.ReadFull(c.Conn, buf[recordHeaderLen:])
	if code, ok := tunnel.ParseRefusal(buf); ok {
		return &RouteError{Code: code, Addr: c.RemoteAddr().String()}
	}
	c.pending = buf[:recordHeaderLen+n]
	return nil
}

// alertFromPeer returns the TLS alert the peer sent, if err is one. The
// crypto/tls package reports remote alerts as a *net.OpError with Op
// "remote error" whose Err is an unexported uint8 type.
func alertFromPeer(err error) (uint8, bool) {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "remote error" || oe.Err == nil {
		return 0, false
	}
	v := reflect.ValueOf(oe.Err)
	if v.Kind() != reflect.Uint8 {
		return 0, false
	}
	return uint8(v.Uint()), true
}

// destinationRefusal maps a TLS alert from the destination proxy to a
// RouteError: certificate and access alerts mean the caller is not allowed.
func destinationRefusal(err error, addr string) (*RouteError, bool) {
	if re, ok := streamRefusal(err, addr); ok {
		return re, true
	}
	a, ok := alertFromPeer(err)
	if !ok || a == 0 { // 0 is close_notify
		return nil, false
	}
	code := straitv1.StreamCode_STREAM_CODE_INTERNAL
	switch a {
	case 42, 43, 44, 45, 46, 48, 49, 116: // bad, unsupported, revoked, expired, unknown certificate; unknown CA; access denied; certificate required
		code = straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED
	}
	return &RouteError{Code: code, Addr: addr, Err: err}, true
}

// ErrBadSNI means an inbound connection named no service in its SNI, or a
// name that is not in the grammar of federation.ServiceName: every caller
// Strait routes names one, so the connection did not come through Strait's
// routing and is refused.
var ErrBadSNI = errors.New("proxy: connection names no service")

// Reasons of strait_proxy_inbound_refusals_total beyond the
// trust.HandshakeFailureReason values.
const (
	refusedTimeout    = "timeout"     // the handshake did not finish in time
	refusedPeerClosed = "peer_closed" // the caller gave up (for example it refused this proxy's certificate)
	refusedBadSNI     = "bad_sni"     // ErrBadSNI
	refusedMisrouted  = "misrouted"   // ErrMisrouted
)

// inboundRefusalReasons lists every reason label of
// strait_proxy_inbound_refusals_total.
func inboundRefusalReasons() []string {
	out := []string{refusedTimeout, refusedPeerClosed, refusedBadSNI, refusedMisrouted}
	for _, r := range trust.HandshakeFailureReasons() {
		out = append(out, string(r))
	}
	return out
}

// refuseHandshake counts and logs an inbound handshake that failed with
// err (other than for want of the application).
func (p *Proxy) refuseHandshake(log *slog.Logger, err error) {
	result := resultHandshake
	if errors.Is(err, ErrUnauthorized) {
		result = resultUnauthorized
	}
	p.metrics.connections.WithLabelValues(dirInbound, result).Inc()
	reason, args := handshakeRefusal(err)
	p.refused(log, "inbound handshake refused", reason, append(args, logErr, err)...)
}

// refuseSNI counts and logs an inbound connection whose SNI checkSNI
// refused with err.
func (p *Proxy) refuseSNI(log *slog.Logger, err error) {
	p.metrics.connections.WithLabelValues(dirInbound, resultMisrouted).Inc()
	reason := refusedMisrouted
	if errors.Is(err, ErrBadSNI) {
		reason = refusedBadSNI
	}
	p.refused(log, "inbound connection refused", reason, logErr, err)
}

func (p *Proxy) refused(log *slog.Logger, msg, reason string, args ...any) {
	p.metrics.inboundRefusals.WithLabelValues(reason).Inc()
	p.metrics.inboundLog.Warn(log, msg, append([]any{logReason, reason}, args...)...)
}

// handshakeRefusal tells why an inbound handshake failed, and the log
// fields naming the caller when its certificate was judged.
func handshakeRefusal(err error) (string, []any) {
	var refused *trust.PeerRefusedError
	switch {
	case errors.As(err, &refused):
		reason := string(refused.Reason)
		if errors.Is(err, ErrUnauthorized) {
			reason = string(trust.ReasonUnauthorized)
		}
		if refused.ID.IsZero() {
			return reason, nil
		}
		return reason, []any{logPeerID, refused.ID.String()}
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return refusedTimeout, nil
	}
	if _, ok := alertFromPeer(err); ok || errors.Is(err, io.EOF) {
		return refusedPeerClosed, nil
	}
	return string(trust.ClassifyHandshakeError(err)), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
