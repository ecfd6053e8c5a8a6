package gateway

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/strait-mesh/strait/gateway/probe"
	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// Layers of a failed probe, as ProbeResult.Layer names them.
const (
	// LayerQUIC: no usable QUIC connection to the remote gateway (dial,
	// handshake, backoff after failures, stream open).
	LayerQUIC = "quic"
	// LayerStream: the remote gateway refused the probe stream (Code) or
	// did not answer it with a statement.
	LayerStream = "stream"
)

// ProbeResult is the outcome of a probe through the data path to a remote
// cluster: the responder's signed statement, or the layer that failed.
type ProbeResult struct {
	// Cluster is the probed cluster; Gateway and Address the remote gateway
	// that answered (or failed last).
	Cluster string `json:"cluster"`
	Gateway string `json:"gateway,omitempty"`
	Address string `json:"address,omitempty"`
	// Seconds is the time from opening the stream to the statement.
	Seconds float64 `json:"seconds,omitempty"`
	// Signed is the responder's statement; the one that chose the nonce
	// verifies it (probe.Verify).
	Signed *probe.Signed `json:"signed,omitempty"`
	// Layer, Code and Error describe a failure.
	Layer string `json:"layer,omitempty"`
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// Probe sends a path probe with nonce to a gateway of cluster (the one
// named gatewayID, or each candidate in route order until one answers)
// over the gateway's pooled QUIC connections, as a proxied stream would
// travel.
func (g *Gateway) Probe(ctx context.Context, cluster, gatewayID string, nonce []byte) ProbeResult {
	res := ProbeResult{Cluster: cluster}
	if len(nonce) != probe.NonceSize {
		res.Layer, res.Error = LayerStream, fmt.Sprintf("nonce is %d bytes, want %d", len(nonce), probe.NonceSize)
		return res
	}
	if cluster == g.cfg.Cluster {
		res.Layer, res.Error = LayerStream, "a gateway does not probe its own cluster"
		return res
	}
	snap := g.cfg.Snapshots.Snapshot()
	var errs []error
	for _, cand := range g.clusterCandidates(snap, cluster) {
		if gatewayID != "" && cand.rec.GetId() != gatewayID {
			continue
		}
		res = g.probeOne(ctx, cand, nonce)
		if res.Error == "" {
			return res
		}
		errs = append(errs, fmt.Errorf("%s: %s", cand.rec.GetId(), res.Error))
	}
	if len(errs) == 0 {
		return ProbeResult{Cluster: cluster, Layer: LayerQUIC, Error: fmt.Sprintf("cluster %s has no live gateway %s in the snapshot", cluster, gatewayID)}
	}
	res.Error = errors.Join(errs...).Error()
	return res
}

func (g *Gateway) probeOne(ctx context.Context, cand candidate, nonce []byte) ProbeResult {
	res := ProbeResult{Cluster: cand.cluster, Gateway: cand.rec.GetId(), Address: cand.rec.GetAddress()}
	live := g.liveNow()
	pc, err := g.pool.conn(ctx, cand.peer, live.dial)
	if err != nil {
		res.Layer, res.Error = LayerQUIC, err.Error()
		return res
	}
	defer pc.release()
	start := time.Now()
	octx, cancel := context.WithTimeout(ctx, live.dial)
	st, err := pc.OpenStreamSync(octx)
	cancel()
	if err != nil {
		res.Layer, res.Error = LayerQUIC, fmt.Sprintf("open stream: %v", err)
		return res
	}
	_ = st.SetDeadline(time.Now().Add(live.dial + live.header))
	buf, err := tunnel.AppendHeader(nil, probe.Header(g.cfg.Cluster, cand.cluster))
	if err == nil {
		_, err = st.Write(append(buf, nonce...))
	}
	var rep *straitv1.StreamReply
	if err == nil {
		rep, err = tunnel.ReadReply(st, 0)
	}
	if err == nil {
		if rerr := tunnel.Err(rep); rerr != nil {
			res.Code = tunnel.CodeName(rep.GetCode())
			err = rerr
		}
	}
	var signed *probe.Signed
	if err == nil {
		signed, err = probe.ReadSigned(st)
	}
	if err != nil {
		st.CancelRead(StreamErrAbandoned)
		st.CancelWrite(StreamErrAbandoned)
		res.Layer, res.Error = LayerStream, err.Error()
		return res
	}
	_ = st.Close()
	st.CancelRead(quic.StreamErrorCode(0))
	res.Seconds = time.Since(start).Seconds()
	res.Signed = signed
	return res
}

// serveProbe answers a probe stream at the ingress: it reads the caller's
// nonce and replies ACCEPTED and the statement signed with the gateway's
// SVID. Any other use of the reserved name is refused.
func (g *Gateway) serveProbe(peer remote, st *quic.Stream, hdr *straitv1.StreamHeader, live *liveConfig) {
	switch {
	case hdr.GetPort() != probe.Port:
		g.refuseStream(peer, st, straitv1.StreamCode_STREAM_CODE_NOT_EXPORTED, fmt.Sprintf("%s.%s is the probe responder, port %d only", probe.Service, probe.Namespace, probe.Port))
		return
	case hdr.GetSourceCluster() != peer.cluster:
		g.refuseStream(peer, st, straitv1.StreamCode_STREAM_CODE_UNAUTHORIZED, fmt.Sprintf("source cluster %q is not the authenticated %q", hdr.GetSourceCluster(), peer.cluster))
		return
	case hdr.GetTargetCluster() != g.cfg.Cluster:
		g.refuseStream(peer, st, straitv1.StreamCode_STREAM_CODE_BAD_REQUEST, fmt.Sprintf("probe for cluster %q reached cluster %q", hdr.GetTargetCluster(), g.cfg.Cluster))
		return
	}
	nonce := make([]byte, probe.NonceSize)
	_ = st.SetReadDeadline(time.Now().Add(live.header))
	if _, err := io.ReadFull(st, nonce); err != nil {
		g.badHeader(peer, st, err)
		return
	}
	svid, err := g.cfg.SVIDs.GetX509SVID()
	var signed *probe.Signed
	if err == nil {
		signed, err = probe.Sign(probe.Statement{
			Nonce: nonce, Responder: svid.ID.String(), Cluster: g.cfg.Cluster, Gateway: g.cfg.ID,
			Caller: peer.id.String(), Time: g.cfg.Now(),
		}, svid)
	}
	if err != nil {
		g.refuseStream(peer, st, straitv1.StreamCode_STREAM_CODE_INTERNAL, err.Error())
		return
	}
	_ = st.SetWriteDeadline(time.Now().Add(live.header))
	if err := tunnel.WriteReply(st, &straitv1.StreamReply{Code: straitv1.StreamCode_STREAM_CODE_ACCEPTED}); err == nil {
		err = probe.WriteSigned(st, signed)
	}
	g.m.streams.WithLabelValues(dirIngress, peer.cluster, tunnel.CodeName(straitv1.StreamCode_STREAM_CODE_ACCEPTED)).Inc()
	_ = st.Close()
}

// maxProbeTime bounds one /probe request.
const maxProbeTime = 10 * time.Second

// handleProbe serves GET /probe?cluster=<name>&nonce=<hex>[&gateway=<id>]
// on the admin port: a path probe from this gateway to the cluster, as
// JSON ProbeResult. The statement is verified by the caller, who chose the
// nonce; this gateway only carries it.
func (g *Gateway) handleProbe(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	nonce, err := hex.DecodeString(q.Get("nonce"))
	if err != nil || len(nonce) != probe.NonceSize {
		http.Error(w, fmt.Sprintf("nonce must be %d bytes in hex", probe.NonceSize), http.StatusBadRequest)
		return
	}
	cluster := q.Get("cluster")
	if cluster == "" {
		http.Error(w, "cluster is required", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), maxProbeTime)
	defer cancel()
	res := g.Probe(ctx, cluster, q.Get("gateway"), nonce)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}
