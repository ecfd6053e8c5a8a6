package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/gateway/tunnel"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// gateways checks that every cluster has live gateway records and that
// each advertised ingress completes a QUIC handshake with its cluster's
// gateway ID.
func (r *runner) gateways(ctx context.Context, snap *federation.Snapshot, bundles x509bundle.Source) []Result {
	var (
		mu  sync.Mutex
		out = map[string][]Result{}
		wg  sync.WaitGroup
	)
	for _, c := range snap.Clusters() {
		gws := snap.Gateways(c)
		if len(gws) == 0 {
			mu.Lock()
			out[c] = []Result{{Category: CategoryGateways, Check: c, Cluster: c, Status: Fail,
				Message: fmt.Sprintf("cluster %s has no live gateway record", c),
				Hint:    "start a gateway for the cluster; a record disappears when its lease expires (the gateway stopped or lost etcd)"}}
			mu.Unlock()
			continue
		}
		mu.Lock()
		out[c] = append(out[c], staleRecords(gws, r.cfg.Now())...)
		mu.Unlock()
		for _, gw := range gws {
			wg.Go(func() {
				res := r.gateway(ctx, snap, gw, bundles)
				mu.Lock()
				out[c] = append(out[c], res)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	var all []Result
	if c := r.cfg.Cluster; c != "" && !slices.Contains(snap.Clusters(), c) {
		all = append(all, Result{Category: CategoryGateways, Check: c, Cluster: c, Status: Fail,
			Message: fmt.Sprintf("cluster %s (--cluster) has no records in etcd", c),
			Hint:    "check the cluster name against the gateway's config, and that its gateway runs and reaches etcd under this --prefix"})
	}
	for _, c := range snap.Clusters() {
		all = append(all, out[c]...)
	}
	return all
}

func (r *runner) gateway(ctx context.Context, snap *federation.Snapshot, gw *straitv1.Gateway, bundles x509bundle.Source) Result {
	c := gw.GetCluster()
	res := Result{Category: CategoryGateways, Check: c + "/" + gw.GetId(), Cluster: c, Gateway: gw.GetId()}
	td, err := spiffeid.TrustDomainFromString(snap.TrustDomain(c))
	var want spiffeid.ID
	if err == nil {
		want, err = trust.GatewayID(td, c)
	}
	if err != nil {
		res.Status, res.Layer, res.Message = Fail, LayerIdentity, fmt.Sprintf("gateway %s of %s: no expected identity: %v", gw.GetId(), c, err)
		return res
	}
	if gw.GetSpiffeId() != want.String() {
		res.Status, res.Layer = Fail, LayerIdentity
		res.Message = fmt.Sprintf("gateway %s of %s records identity %q, want %s", gw.GetId(), c, gw.GetSpiffeId(), want)
		res.Hint = "the record's writer runs with another trust domain or cluster name than the cluster's other records"
		return res
	}
	h := r.handshake(ctx, gw.GetAddress(), want, bundles)
	res.Layer, res.RTTSeconds = h.layer, h.rtt.Seconds()
	switch {
	case h.err != nil:
		res.Status = Fail
		res.Message = fmt.Sprintf("gateway %s of %s at %s: %s: %v", gw.GetId(), c, gw.GetAddress(), h.layer, h.err)
		res.Hint = hintFor(h.layer, gw.GetAddress())
	case gw.GetDraining():
		res.Status = Warn
		res.Message = fmt.Sprintf("gateway %s of %s at %s is draining; QUIC handshake as %s in %s", gw.GetId(), c, gw.GetAddress(), want, roundRTT(h.rtt))
		res.Hint = "a draining gateway refuses new streams; it leaves when its streams end"
	default:
		res.Status = OK
		res.Message = fmt.Sprintf("gateway %s of %s at %s: QUIC handshake as %s in %s", gw.GetId(), c, gw.GetAddress(), want, roundRTT(h.rtt))
	}
	return res
}

func roundRTT(d time.Duration) time.Duration {
	if d > 10*time.Millisecond {
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func hintFor(layer, addr string) string {
	switch layer {
	case LayerDNS:
		return fmt.Sprintf("the advertised host of %s does not resolve from here: check the gateway's ingress.advertise and DNS", addr)
	case LayerQUIC:
		return fmt.Sprintf("is the gateway running, and does UDP reach %s from here (firewall, load balancer, security group)?", addr)
	case LayerIdentity:
		return "the address answers with a certificate that is not this cluster's gateway ID under its bundle: a wrong address, or a gateway of another trust domain"
	case LayerStream:
		return "the remote gateway refused the stream: see its logs for the refusal reason"
	}
	return ""
}

type handshakeResult struct {
	layer string
	rtt   time.Duration
	err   error
}

// handshake dials a QUIC ingress and verifies the certificate it presents
// against bundles and want. The ingress then refuses this client, which
// has no SVID; the server's identity was proven before that.
func (r *runner) handshake(ctx context.Context, addr string, want spiffeid.ID, bundles x509bundle.Source) handshakeResult {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return handshakeResult{layer: LayerDNS, err: fmt.Errorf("bad address: %w", err)}
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.HandshakeTimeout)
	defer cancel()
	if net.ParseIP(host) == nil {
		if _, err := net.DefaultResolver.LookupHost(ctx, host); err != nil {
			return handshakeResult{layer: LayerDNS, err: err}
		}
	}
	var (
		mu         sync.Mutex
		idErr      error
		verifiedAt time.Time
	)
	start := time.Now()
	conf := &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{tunnel.ALPN},
		// The chain is verified below, against the SPIFFE bundles.
		InsecureSkipVerify: true, //nolint:gosec
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, _, err := x509svid.ParseAndVerify(raw, bundles)
			if err == nil && id != want {
				err = fmt.Errorf("presented %s, want %s", id, want)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				idErr = err
				return err
			}
			verifiedAt = time.Now()
			return nil
		},
	}
	conn, err := quic.DialAddr(ctx, addr, conf, &quic.Config{HandshakeIdleTimeout: r.cfg.HandshakeTimeout})
	if conn != nil {
		_ = conn.CloseWithError(0, "strait check")
	}
	mu.Lock()
	defer mu.Unlock()
	switch {
	case idErr != nil:
		return handshakeResult{layer: LayerIdentity, err: idErr}
	case !verifiedAt.IsZero():
		return handshakeResult{rtt: verifiedAt.Sub(start)}
	case err == nil:
		return handshakeResult{layer: LayerIdentity, err: errors.New("handshake completed without a verified certificate")}
	default:
		return handshakeResult{layer: LayerQUIC, err: fmt.Errorf("no QUIC handshake within %s (%s): %w", r.cfg.HandshakeTimeout, udpReach(addr), err)}
	}
}

// udpReachTimeout bounds the UDP reachability probe of a failed handshake.
const udpReachTimeout = 300 * time.Millisecond

// udpReach tells, for an address that did not answer QUIC, whether its
// host reported the UDP port closed (an ICMP port unreachable, seen on a
// connected socket) or said nothing at all. It sends one datagram that is
// not a QUIC packet, which a QUIC server drops.
func udpReach(addr string) string {
	c, err := net.DialTimeout("udp", addr, udpReachTimeout)
	if err != nil {
		return fmt.Sprintf("UDP: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(udpReachTimeout))
	_, err = c.Write(make([]byte, 64))
	if err == nil {
		_, err = c.Read(make([]byte, 64))
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return "UDP port unreachable: nothing listens there"
	}
	return "no ICMP error either: the host is down, UDP is filtered, or the gateway hangs"
}
