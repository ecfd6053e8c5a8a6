package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-mesh/strait/internal/ratelog"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// Reasons of strait_gateway_endpoint_dials_refused_total: why the ingress
// refused to dial an endpoint address.
const (
	dialRefusedOutsideRanges = "outside_ranges" // the configured ranges do not contain it
	dialRefusedLoopback      = "loopback"
	dialRefusedLinkLocal     = "link_local"
	dialRefusedMulticast     = "multicast"
	dialRefusedUnspecified   = "unspecified"
	dialRefusedOwnListener   = "own_listener" // one of the gateway's listeners
	dialRefusedEtcd          = "etcd"         // an etcd endpoint the gateway uses
)

// defaultEtcdPort is the port of an etcd endpoint written without one.
const defaultEtcdPort = 2379

// etcdResolveTimeout bounds the resolution of etcd host names in Run.
const etcdResolveTimeout = 2 * time.Second

// EndpointRefusedError is the error of an endpoint address the ingress
// refused to dial. It matches ErrEndpointRefused.
type EndpointRefusedError struct {
	// Endpoint is the endpoint's ID.
	Endpoint string
	// Reason is the metric's reason label.
	Reason string
}

func (e *EndpointRefusedError) Error() string {
	return fmt.Sprintf("endpoint %s: address refused (%s)", e.Endpoint, e.Reason)
}

// Is makes the error match ErrEndpointRefused.
func (e *EndpointRefusedError) Is(target error) bool { return target == ErrEndpointRefused }

// ErrEndpointRefused matches the errors of endpoint addresses the ingress's
// dial policy does not allow (see Config.EndpointCIDRs).
var ErrEndpointRefused = errors.New("gateway: endpoint address refused")

// protectedAddr is an address the ingress never dials. An unspecified or
// loopback IP stands for every address of this host.
type protectedAddr struct {
	ip     netip.Addr
	port   uint16
	reason string
}

// dialGuard decides which resolved endpoint addresses the ingress may dial
// and counts and logs the refused ones.
type dialGuard struct {
	protected atomic.Pointer[[]protectedAddr] // set when Run binds
	refused   *prometheus.CounterVec          // reason
	warn      *ratelog.Limiter                // WARN lines of refusals
}

func newDialGuard(reg prometheus.Registerer) (*dialGuard, error) {
	d := &dialGuard{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_endpoint_dials_refused_total",
			Help: "Endpoint addresses the ingress refused to dial (answered NO_ENDPOINT unless another endpoint served), by reason.",
		}, []string{"reason"}),
		warn: ratelog.New(ratelog.Config{}),
	}
	if err := reg.Register(d.refused); err != nil {
		return nil, fmt.Errorf("gateway: register metrics: %w", err)
	}
	return d, nil
}

// endpointRanges parses the live configuration's endpoint_cidrs; nil means
// the list was empty. Entries that do not parse (validation keeps them out
// of snapshots) admit nothing.
func endpointRanges(cidrs []string, def []netip.Prefix, log *slog.Logger) []netip.Prefix {
	if len(cidrs) == 0 {
		return def
	}
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			log.Warn("gateway: ignoring a bad endpoint_cidrs entry", logErr, err)
			continue
		}
		out = append(out, p.Masked())
	}
	return out
}

// verdict returns "" when the ingress may dial ap, else the reason it may
// not. ranges nil means the default policy.
func (d *dialGuard) verdict(ap netip.AddrPort, ranges []netip.Prefix) string {
	ip := ap.Addr().Unmap()
	switch {
	case ip.IsUnspecified():
		return dialRefusedUnspecified
	case ip.IsMulticast():
		return dialRefusedMulticast
	}
	if r := d.protectedReason(ip, ap.Port()); r != "" {
		return r
	}
	if ranges != nil {
		for _, p := range ranges {
			if p.Contains(ip.WithZone("")) {
				return ""
			}
		}
		return dialRefusedOutsideRanges
	}
	switch {
	case ip.IsLoopback():
		return dialRefusedLoopback
	case ip.IsLinkLocalUnicast():
		return dialRefusedLinkLocal
	}
	return ""
}

func (d *dialGuard) protectedReason(ip netip.Addr, port uint16) string {
	ps := d.protected.Load()
	if ps == nil {
		return ""
	}
	local := -1 // unknown until needed
	for _, p := range *ps {
		if p.port != port {
			continue
		}
		if p.ip == ip {
			return p.reason
		}
		if p.ip.IsUnspecified() || p.ip.IsLoopback() {
			if local < 0 {
				local = 0
				if isLocalAddr(ip) {
					local = 1
				}
			}
			if local == 1 {
				return p.reason
			}
		}
	}
	return ""
}

// isLocalAddr reports whether a connection to ip reaches this host.
func isLocalAddr(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // unknown: assume the worst
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == ip.WithZone("") {
			return true
		}
	}
	return false
}

// protect records the gateway's own listeners and its etcd endpoints, once
// Run has bound them.
func (g *Gateway) protect(ctx context.Context) {
	var ps []protectedAddr
	addOwn := func(a net.Addr) {
		if a == nil {
			return
		}
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			ps = append(ps, protectedAddr{ip: ap.Addr().Unmap(), port: ap.Port(), reason: dialRefusedOwnListener})
		}
	}
	addOwn(g.ingressAddr)
	addOwn(g.egressLn.Addr())
	addOwn(g.adminLn.Addr())
	for _, a := range []string{g.cfg.IngressAdvertiseAddr, g.cfg.EgressAdvertiseAddr} {
		if ap, err := netip.ParseAddrPort(a); err == nil {
			ps = append(ps, protectedAddr{ip: ap.Addr().Unmap(), port: ap.Port(), reason: dialRefusedOwnListener})
		}
	}
	ctx, cancel := context.WithTimeout(ctx, etcdResolveTimeout)
	defer cancel()
	for _, e := range g.cfg.EtcdEndpoints {
		host, port, _ := splitEtcdEndpoint(e) // validated by New
		ips, err := g.cfg.Resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			g.log.Warn("gateway: cannot resolve an etcd endpoint; the ingress cannot refuse dials to it", logAddr, e, logErr, err)
			continue
		}
		for _, ip := range ips {
			ps = append(ps, protectedAddr{ip: ip.Unmap(), port: port, reason: dialRefusedEtcd})
		}
	}
	g.dialGuard.protected.Store(&ps)
}

// splitEtcdEndpoint returns the host and port of an etcd client URL or
// host:port.
func splitEtcdEndpoint(e string) (string, uint16, error) {
	hostport := e
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil {
			return "", 0, fmt.Errorf("etcd endpoint %q: %w", e, err)
		}
		hostport = u.Host
	}
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		// No port: etcd's.
		host, p = strings.Trim(hostport, "[]"), strconv.Itoa(defaultEtcdPort)
	}
	port, perr := strconv.ParseUint(p, 10, 16)
	if host == "" || perr != nil || port == 0 {
		return "", 0, fmt.Errorf("etcd endpoint %q is not a URL or host:port", e)
	}
	return host, uint16(port), nil
}

// resolveEndpoint returns the addresses an endpoint address stands for,
// resolving a host name now: the policy is checked on what is dialed.
func (g *Gateway) resolveEndpoint(ctx context.Context, addr string) ([]netip.AddrPort, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("address %q: port is not 1-65535", addr)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.AddrPort{netip.AddrPortFrom(ip, uint16(port))}, nil
	}
	ips, err := g.cfg.Resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	out := make([]netip.AddrPort, len(ips))
	for i, ip := range ips {
		out[i] = netip.AddrPortFrom(ip, uint16(port))
	}
	return out, nil
}

// dialOne dials the first address of ep that the policy admits.
func (g *Gateway) dialOne(ctx context.Context, live *liveConfig, ep *straitv1.Endpoint) (*net.TCPConn, error) {
	addrs, err := g.resolveEndpoint(ctx, ep.GetAddress())
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", ep.GetId(), err)
	}
	var errs []error
	for _, ap := range addrs {
		if reason := g.dialGuard.verdict(ap, live.endpointRanges); reason != "" {
			g.refuseDial(ep, ap, reason)
			errs = append(errs, &EndpointRefusedError{Endpoint: ep.GetId(), Reason: reason})
			continue
		}
		c, err := g.cfg.DialEndpoint(ctx, "tcp", ap.String())
		if err == nil {
			if tc, ok := c.(*net.TCPConn); ok {
				return tc, nil
			}
			_ = c.Close()
			err = fmt.Errorf("endpoint %s: not a TCP connection", ep.GetId())
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// refuseDial counts a refused endpoint address and logs it at WARN (rate
// limited).
func (g *Gateway) refuseDial(ep *straitv1.Endpoint, ap netip.AddrPort, reason string) {
	g.dialGuard.refused.WithLabelValues(reason).Inc()
	g.dialGuard.warn.Warn(g.log, "gateway: refused to dial an endpoint address",
		logEndpoint, ep.GetId(), logService, ep.GetNamespace()+"/"+ep.GetService(), logAddr, ap.String(), logRefusalReason, reason)
}
