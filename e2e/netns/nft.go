package netns

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
)

// nftTable is the nftables table Partition manages in a namespace.
const nftTable = "strait_e2e"

const nftSetup = `table inet strait_e2e {
	set peers4 { type ipv4_addr; flags interval; }
	chain input { type filter hook input priority -10; policy accept; ip saddr @peers4 drop; }
	chain output { type filter hook output priority -10; policy accept; ip daddr @peers4 drop; }
	chain forward { type filter hook forward priority -10; policy accept; ip saddr @peers4 drop; ip daddr @peers4 drop; }
}
`

// Partition drops, with nftables inside this namespace, every packet to or
// from peer: received, sent and (on a router) forwarded. TCP connections to
// and from peer hang (their packets vanish), on a router for every host of its
// cluster; UDP sends from this namespace to peer may fail locally with
// "operation not permitted". Heal undoes it.
func (h *Host) Partition(ctx context.Context, peer netip.Prefix) error {
	if !peer.Addr().Is4() {
		return fmt.Errorf("netns: partition %s: only IPv4 peers", peer)
	}
	script := nftSetup + fmt.Sprintf("add element inet %s peers4 { %s }\n", nftTable, peer.Masked())
	return h.nft(ctx, script)
}

// Heal removes the partition from peer.
func (h *Host) Heal(ctx context.Context, peer netip.Prefix) error {
	return h.nft(ctx, fmt.Sprintf("delete element inet %s peers4 { %s }\n", nftTable, peer.Masked()))
}

// HealAll removes every partition of this namespace.
func (h *Host) HealAll(ctx context.Context) error {
	return h.nft(ctx, nftSetup+fmt.Sprintf("flush set inet %s peers4\n", nftTable))
}

func (h *Host) nft(ctx context.Context, script string) error {
	cmd := h.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("netns: %s: nft: %w: %s", h, err, strings.TrimSpace(string(out)))
	}
	return nil
}
