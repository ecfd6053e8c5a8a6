package federation

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// maxIDLength bounds gateway and endpoint IDs (a DNS name's length).
const maxIDLength = 253

// ValidateRecord checks a decoded record against the key it is stored at.
// It returns nil or an *InvalidRecordError (matching ErrInvalidRecord) that
// lists every problem.
func ValidateRecord(info KeyInfo, msg proto.Message) error {
	var p problems
	switch m := msg.(type) {
	case *straitv1.Gateway:
		validateGateway(&p, info, m)
	case *straitv1.Export:
		validateExport(&p, info, m)
	case *straitv1.Endpoint:
		validateEndpoint(&p, info, m)
	case *straitv1.TrustBundle:
		validateBundle(&p, info, m)
	case *straitv1.GatewayConfig:
		validateConfig(&p, info, m)
	default:
		p.add("unexpected message type %T", msg)
	}
	if info.Kind != "" && NewMessage(info.Kind) != nil && NewMessage(info.Kind).ProtoReflect().Descriptor() != msg.ProtoReflect().Descriptor() {
		p.add("key holds %s records, not %T", info.Kind, msg)
	}
	if err := p.err(); err != nil {
		return &InvalidRecordError{Kind: info.Kind, Reason: "validate", Err: err}
	}
	return nil
}

func validateGateway(p *problems, info KeyInfo, g *straitv1.Gateway) {
	matchLabel(p, "cluster", info.Cluster, g.GetCluster())
	matchID(p, info.ID, g.GetId())
	if td := g.GetTrustDomain(); td != "" {
		if _, err := spiffeid.TrustDomainFromString(td); err != nil {
			p.add("trust_domain %q: %w", td, err)
		}
	}
	if id := g.GetSpiffeId(); id != "" {
		sid, err := spiffeid.FromString(id)
		switch {
		case err != nil:
			p.add("spiffe_id %q: %w", id, err)
		case g.GetTrustDomain() != "" && sid.TrustDomain().Name() != g.GetTrustDomain():
			p.add("spiffe_id %q is not in trust domain %q", id, g.GetTrustDomain())
		}
	}
	if g.GetAddress() == "" {
		p.add("address is required")
	} else {
		p.addErr(checkDialAddress("address", g.GetAddress()))
	}
	if a := g.GetEgressAddress(); a != "" {
		p.addErr(checkDialAddress("egress_address", a))
	}
	if a := g.GetAdminAddress(); a != "" {
		if _, err := splitHostPort(a); err != nil {
			p.add("admin_address: %w", err)
		}
	}
}

func validateExport(p *problems, info KeyInfo, e *straitv1.Export) {
	matchLabel(p, "cluster", info.Cluster, e.GetCluster())
	matchLabel(p, "namespace", info.Namespace, e.GetNamespace())
	matchLabel(p, "service", info.Service, e.GetService())
	if len(e.GetPorts()) == 0 {
		p.add("ports: at least one port is required")
	}
	validatePorts(p, e.GetPorts())
	for i, sp := range e.GetPorts() {
		if sp.GetProtocol() == straitv1.Protocol_PROTOCOL_UDP {
			p.add("ports[%d] %s:%d/UDP: %w", i, sp.GetName(), sp.GetPort(), ErrUDPUnsupported)
		}
	}
	for _, c := range e.GetConsumers() {
		p.addErr(ValidateConsumer(c))
	}
	seen := map[string]bool{}
	for i, sa := range e.GetServers() {
		if err := ValidateServiceAccount(sa); err != nil {
			p.add("servers[%d]: %w", i, err)
		} else if seen[sa] {
			p.add("servers[%d] %q is listed twice", i, sa)
		}
		seen[sa] = true
	}
	if e.GetCreatedAt() != nil {
		if err := e.GetCreatedAt().CheckValid(); err != nil {
			p.add("created_at: %w", err)
		}
	}
	validateFailover(p, "failover", e.GetFailover())
}

func validateEndpoint(p *problems, info KeyInfo, ep *straitv1.Endpoint) {
	matchLabel(p, "cluster", info.Cluster, ep.GetCluster())
	matchLabel(p, "namespace", info.Namespace, ep.GetNamespace())
	matchLabel(p, "service", info.Service, ep.GetService())
	matchID(p, info.ID, ep.GetId())
	if ep.GetAddress() == "" {
		p.add("address is required")
	} else {
		p.addErr(checkDialAddress("address", ep.GetAddress()))
	}
	validatePorts(p, ep.GetPorts())
	// The SPIFFE ID that serves the endpoint is required: callers verify
	// the destination against it. It must be a workload of the endpoint's
	// namespace; whether the export allows its trust domain and service
	// account is judged with the other records (Snapshot.RejectedEndpoints).
	switch id := ep.GetSpiffeId(); id {
	case "":
		p.add("spiffe_id is required: the identity that serves the endpoint")
	default:
		sid, err := spiffeid.FromString(id)
		if err != nil {
			p.add("spiffe_id %q: %w", id, err)
			break
		}
		if err := (ServerPolicy{Namespace: ep.GetNamespace()}).Check(sid); err != nil {
			p.add("spiffe_id: %w", err)
		}
	}
}

func validateBundle(p *problems, info KeyInfo, b *straitv1.TrustBundle) {
	if b.GetTrustDomain() != info.TrustDomain {
		p.add("trust_domain %q does not match the key's %q", b.GetTrustDomain(), info.TrustDomain)
	}
	if _, err := spiffeid.TrustDomainFromString(b.GetTrustDomain()); err != nil {
		p.add("trust_domain %q: %w", b.GetTrustDomain(), err)
	}
	if len(b.GetX509Authorities()) == 0 {
		p.add("x509_authorities: at least one CA certificate is required")
	}
	for i, der := range b.GetX509Authorities() {
		cert, err := x509.ParseCertificate(der)
		switch {
		case err != nil:
			p.add("x509_authorities[%d]: %w", i, err)
		case !cert.BasicConstraintsValid || !cert.IsCA:
			p.add("x509_authorities[%d]: %q is not a CA certificate", i, cert.Subject.String())
		}
	}
	validateDuration(p, "refresh_hint", b.GetRefreshHint())
}

func validateConfig(p *problems, info KeyInfo, c *straitv1.GatewayConfig) {
	if info.Cluster != "" {
		if err := ValidateLabel(info.Cluster); err != nil {
			p.add("cluster in key: %w", err)
		}
	}
	validateDuration(p, "drain_timeout", c.GetDrainTimeout())
	validateDuration(p, "idle_timeout", c.GetIdleTimeout())
	validateDuration(p, "keep_alive_period", c.GetKeepAlivePeriod())
	validateDuration(p, "header_timeout", c.GetHeaderTimeout())
	validateDuration(p, "dial_timeout", c.GetDialTimeout())
	validateFailover(p, "failover", c.GetFailover())
	for i, cidr := range c.GetEndpointCidrs() {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			p.add("endpoint_cidrs[%d]: %w", i, err)
		}
	}
}

func validateFailover(p *problems, field string, f *straitv1.FailoverPolicy) {
	if f == nil {
		return
	}
	for i, r := range f.GetRegionOrder() {
		if r == "" {
			p.add("%s.region_order[%d] is empty", field, i)
		}
	}
	if f.GetMinHealthyPercent() > 100 {
		p.add("%s.min_healthy_percent %d is more than 100", field, f.GetMinHealthyPercent())
	}
	validateDuration(p, field+".base_ejection", f.GetBaseEjection())
}

func validateDuration(p *problems, field string, d *durationpb.Duration) {
	if d == nil {
		return
	}
	if err := d.CheckValid(); err != nil {
		p.add("%s: %w", field, err)
		return
	}
	if d.AsDuration() < 0 {
		p.add("%s is negative", field)
	}
}

func validatePorts(p *problems, ports []*straitv1.ServicePort) {
	seen := map[string]bool{}
	for i, sp := range ports {
		if err := ValidateLabel(sp.GetName()); err != nil {
			p.add("ports[%d].name: %w", i, err)
		} else if seen[sp.GetName()] {
			p.add("ports[%d].name %q is not unique", i, sp.GetName())
		}
		seen[sp.GetName()] = true
		if sp.GetPort() < 1 || sp.GetPort() > 65535 {
			p.add("ports[%d].port %d is not 1-65535", i, sp.GetPort())
		}
		if _, ok := straitv1.Protocol_name[int32(sp.GetProtocol())]; !ok {
			p.add("ports[%d].protocol %d is unknown", i, sp.GetProtocol())
		}
	}
}

// matchLabel checks a record field against the key segment it must equal.
func matchLabel(p *problems, field, fromKey, got string) {
	if got != fromKey {
		p.add("%s %q does not match the key's %q", field, got, fromKey)
		return
	}
	if err := ValidateLabel(got); err != nil {
		p.add("%s: %w", field, err)
	}
}

// matchID checks a gateway or endpoint ID against its key.
func matchID(p *problems, fromKey, got string) {
	if got != fromKey {
		p.add("id %q does not match the key's %q", got, fromKey)
		return
	}
	if len(got) == 0 || len(got) > maxIDLength {
		p.add("id must be 1-%d characters", maxIDLength)
	}
	for _, r := range got {
		if r <= ' ' || r == 0x7f || r == '/' {
			p.add("id %q contains a space, control character or '/'", got)
			break
		}
	}
}

// ValidateConsumer checks an export consumer: a SPIFFE ID
// (spiffe://td/ns/x/sa/y) or a whole trust domain (spiffe://td).
func ValidateConsumer(c string) error {
	if _, err := spiffeid.FromString(c); err != nil {
		return fmt.Errorf("consumer %q: %w", c, err)
	}
	return nil
}

// isMetadataHost reports whether a host name resolves to a cloud metadata
// service.
func isMetadataHost(host string) bool {
	switch strings.ToLower(strings.TrimSuffix(host, ".")) {
	case "metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal":
		return true
	}
	return false
}

// checkDialAddress checks an address peers will dial: host:port with a port
// of 1-65535, and a host that is neither unspecified nor link-local (the
// cloud metadata service lives at 169.254.169.254).
func checkDialAddress(field, addr string) error {
	host, err := splitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		if isMetadataHost(host) {
			return fmt.Errorf("%s %q names a metadata service", field, addr)
		}
		if err := checkHostName(host); err != nil {
			return fmt.Errorf("%s %q: %w", field, addr, err)
		}
		return nil
	}
	ip = ip.Unmap()
	switch {
	case ip.IsUnspecified():
		return fmt.Errorf("%s %q is unspecified", field, addr)
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return fmt.Errorf("%s %q is link-local (metadata services live there)", field, addr)
	case ip.IsMulticast():
		return fmt.Errorf("%s %q is multicast", field, addr)
	}
	return nil
}

// checkHostName checks that host is a DNS name: dot-separated labels of
// 1-63 letters, digits and hyphens (not at either end), 253 characters at
// most, whose last label is not all digits (resolvers read "127.1" or
// "2130706433" as IPv4 addresses).
func checkHostName(host string) error {
	name := strings.TrimSuffix(host, ".")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("host %q is neither an IP address nor a DNS name", host)
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("host %q is neither an IP address nor a DNS name", host)
		}
		for _, r := range l {
			if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-') {
				return fmt.Errorf("host %q is neither an IP address nor a DNS name", host)
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return fmt.Errorf("host %q is neither an IP address nor a DNS name (a numeric last label reads as an IPv4 address)", host)
	}
	return nil
}

// splitHostPort checks host:port and returns the host.
func splitHostPort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if host == "" {
		return "", fmt.Errorf("%q has no host", addr)
	}
	if strings.ContainsAny(host, " /\\@%") {
		return "", fmt.Errorf("%q has a bad host", addr)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", fmt.Errorf("%q: port is not 1-65535", addr)
	}
	return host, nil
}
