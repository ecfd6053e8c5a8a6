package nft

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/strait-mesh/strait/proxy/capture"
)

// List reads the rules of the capture chain back from the kernel and
// returns them in nft syntax, as Rules writes them: after Install(cfg),
// List returns Rules(cfg). An expression this package does not write shows
// as "<unknown T>". No table returns nil.
func List(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("capture: netlink: %w", err)
	}
	if ok, err := present(conn); err != nil || !ok {
		return nil, err
	}
	t := table()
	rs, err := conn.GetRules(t, &nftables.Chain{Name: capture.Chain, Table: t})
	if err != nil {
		return nil, fmt.Errorf("capture: list chain %s: %w", capture.Chain, err)
	}
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, render(r.Exprs))
	}
	return out, nil
}

// Ruleset is the capture table as List reads it, in the layout of
// `nft -y list table ip strait` (numeric priority); "" when there is no
// table.
func Ruleset(ctx context.Context) (string, error) {
	rules, err := List(ctx)
	if err != nil || rules == nil {
		return "", err
	}
	conn, err := nftables.New()
	if err != nil {
		return "", fmt.Errorf("capture: netlink: %w", err)
	}
	ch, err := conn.ListChain(table(), capture.Chain)
	if err != nil {
		return "", fmt.Errorf("capture: chain %s: %w", capture.Chain, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s {\n\tchain %s {\n\t\t%s\n", capture.Table, capture.Chain, chainHeader(ch))
	for _, r := range rules {
		fmt.Fprintf(&b, "\t\t%s\n", r)
	}
	b.WriteString("\t}\n}\n")
	return b.String(), nil
}

func chainHeader(ch *nftables.Chain) string {
	hook, prio, policy := "?", "?", "?"
	if ch.Hooknum != nil {
		hook = map[nftables.ChainHook]string{unix.NF_INET_PRE_ROUTING: "prerouting", unix.NF_INET_LOCAL_IN: "input",
			unix.NF_INET_FORWARD: "forward", unix.NF_INET_LOCAL_OUT: "output", unix.NF_INET_POST_ROUTING: "postrouting"}[*ch.Hooknum]
	}
	if ch.Priority != nil {
		prio = fmt.Sprint(int32(*ch.Priority))
	}
	if ch.Policy != nil {
		policy = map[nftables.ChainPolicy]string{nftables.ChainPolicyAccept: "accept", nftables.ChainPolicyDrop: "drop"}[*ch.Policy]
	}
	return fmt.Sprintf("type %s hook %s priority %s; policy %s;", ch.Type, hook, prio, policy)
}

// render writes a rule's expressions in nft syntax. It knows the forms
// build writes: a register loaded from meta or payload, an optional
// prefix mask, a comparison; an immediate port and a redirect; a verdict.
func render(es []expr.Any) string {
	var terms []string
	var load string // what register 1 holds
	var prefix = -1 // the mask applied to it, in bits
	var imm []byte  // an immediate value in register 1
	for _, e := range es {
		switch e := e.(type) {
		case *expr.Meta:
			load, prefix = metaName(e.Key), -1
		case *expr.Payload:
			load, prefix = payloadName(e), -1
		case *expr.Bitwise:
			prefix = maskBits(e.Mask)
		case *expr.Cmp:
			if e.Op != expr.CmpOpEq {
				terms = append(terms, fmt.Sprintf("<cmp op %d>", e.Op))
				continue
			}
			terms = append(terms, load+" "+value(load, e.Data, prefix))
		case *expr.Immediate:
			imm = e.Data
		case *expr.Redir:
			if e.RegisterProtoMin != 0 && len(imm) == 2 {
				terms = append(terms, fmt.Sprintf("redirect to :%d", binary.BigEndian.Uint16(imm)))
			} else {
				terms = append(terms, "redirect")
			}
		case *expr.Verdict:
			terms = append(terms, verdictName(e))
		default:
			terms = append(terms, fmt.Sprintf("<unknown %T>", e))
		}
	}
	// nft writes "meta l4proto tcp" followed by a port match as "tcp dport".
	for i := 0; i+1 < len(terms); i++ {
		if p, ok := strings.CutPrefix(terms[i], "meta l4proto "); ok && strings.HasPrefix(terms[i+1], "th dport ") {
			terms[i+1] = p + strings.TrimPrefix(terms[i+1], "th")
			terms = append(terms[:i], terms[i+1:]...)
		}
	}
	return strings.Join(terms, " ")
}

func metaName(k expr.MetaKey) string {
	switch k {
	case expr.MetaKeyMARK:
		return "meta mark"
	case expr.MetaKeySKUID:
		return "meta skuid"
	case expr.MetaKeySKGID:
		return "meta skgid"
	case expr.MetaKeyL4PROTO:
		return "meta l4proto"
	}
	return fmt.Sprintf("meta <key %d>", k)
}

func payloadName(p *expr.Payload) string {
	switch {
	case p.Base == expr.PayloadBaseNetworkHeader && p.Offset == 16 && p.Len == 4:
		return "ip daddr"
	case p.Base == expr.PayloadBaseTransportHeader && p.Offset == 2 && p.Len == 2:
		return "th dport"
	}
	return fmt.Sprintf("@<base %d offset %d len %d>", p.Base, p.Offset, p.Len)
}

func value(load string, b []byte, prefix int) string {
	switch {
	case load == "meta mark" && len(b) == 4:
		return fmt.Sprintf("0x%08x", binary.NativeEndian.Uint32(b))
	case (load == "meta skuid" || load == "meta skgid") && len(b) == 4:
		return fmt.Sprint(binary.NativeEndian.Uint32(b))
	case load == "meta l4proto" && len(b) == 1:
		return protoName(b[0])
	case load == "ip daddr" && len(b) == 4:
		if prefix < 0 {
			prefix = 32
		}
		return prefixText(netip.PrefixFrom(netip.AddrFrom4([4]byte(b)), prefix))
	case load == "th dport" && len(b) == 2:
		return fmt.Sprint(binary.BigEndian.Uint16(b))
	}
	return fmt.Sprintf("0x%x", b)
}

// maskBits is the prefix length of a contiguous mask, or -1.
func maskBits(m []byte) int {
	if len(m) != 4 {
		return -1
	}
	v := binary.BigEndian.Uint32(m)
	n := bits.LeadingZeros32(^v)
	if v<<n != 0 {
		return -1
	}
	return n
}

func verdictName(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	}
	return fmt.Sprintf("<verdict %d>", v.Kind)
}
