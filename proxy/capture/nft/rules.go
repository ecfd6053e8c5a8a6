package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/strait-mesh/strait/proxy/capture"
)

// rule is one rule of the chain: its nftables expressions and the same in
// nft syntax.
type rule struct {
	text  string
	exprs []expr.Any
}

// build returns the rules of the chain for c (defaults applied), in order:
// what the proxy sends itself, loopback and the exclusions return (the
// chain's policy accepts them unchanged); DNS goes to DNSPort; other TCP to
// OutboundPort; everything else (UDP, ICMP) passes.
func build(c capture.Config) []rule {
	ret := &expr.Verdict{Kind: expr.VerdictReturn}
	rules := []rule{{
		text:  fmt.Sprintf("meta mark 0x%08x return", c.Mark),
		exprs: append(metaEq(expr.MetaKeyMARK, native32(c.Mark)), ret),
	}}
	for _, uid := range c.ExcludeUIDs {
		rules = append(rules, rule{fmt.Sprintf("meta skuid %d return", uid), append(metaEq(expr.MetaKeySKUID, native32(uid)), ret)})
	}
	for _, gid := range c.ExcludeGIDs {
		rules = append(rules, rule{fmt.Sprintf("meta skgid %d return", gid), append(metaEq(expr.MetaKeySKGID, native32(gid)), ret)})
	}
	for _, p := range append([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, c.ExcludeCIDRs...) {
		rules = append(rules, rule{"ip daddr " + prefixText(p) + " return", append(daddrIn(p), ret)})
	}
	for _, port := range c.ExcludePorts {
		rules = append(rules, rule{fmt.Sprintf("tcp dport %d return", port), append(dportEq(unix.IPPROTO_TCP, port), ret)})
	}
	if !c.NoDNS {
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			rules = append(rules, rule{
				text:  fmt.Sprintf("%s dport 53 redirect to :%d", protoName(proto), c.DNSPort),
				exprs: append(dportEq(proto, 53), redirect(c.DNSPort)...),
			})
		}
	}
	return append(rules, rule{
		text:  fmt.Sprintf("meta l4proto tcp redirect to :%d", c.OutboundPort),
		exprs: append(metaEq(expr.MetaKeyL4PROTO, []byte{unix.IPPROTO_TCP}), redirect(c.OutboundPort)...),
	})
}

// metaEq matches a meta key against data.
func metaEq(key expr.MetaKey, data []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data},
	}
}

// daddrIn matches an IPv4 destination inside p.
func daddrIn(p netip.Prefix) []expr.Any {
	p = p.Masked()
	addr := p.Addr().As4()
	es := []expr.Any{&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}}
	if p.Bits() < 32 {
		mask := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-p.Bits()))
		es = append(es, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)})
	}
	return append(es, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr[:]})
}

// dportEq matches a transport protocol and its destination port.
func dportEq(proto byte, port uint16) []expr.Any {
	return append(metaEq(expr.MetaKeyL4PROTO, []byte{proto}),
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)})
}

// redirect sends the packet to port on the primary address of the
// incoming interface, loopback here (the REDIRECT of iptables): the
// connection's conntrack entry keeps its original destination, which
// SO_ORIGINAL_DST reads.
func redirect(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
		&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	}
}

func native32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func prefixText(p netip.Prefix) string {
	p = p.Masked()
	if p.Bits() == 32 {
		return p.Addr().String()
	}
	return p.String()
}

func protoName(p byte) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	}
	return strconv.Itoa(int(p))
}
