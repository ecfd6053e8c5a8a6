// Package nft installs, lists and removes the capture rules that a
// capture.Config describes (see package proxy/capture for the rules), as
// one nftables table programmed over netlink (github.com/google/nftables):
// no iptables or nft command, CAP_NET_ADMIN only. It is the init
// container's code (strait-init); the proxy itself imports package capture
// alone, so that the sidecar binary carries none of it.
//
//	cfg := capture.Config{ExcludeGIDs: []uint32{1337}}
//	if err := nft.Install(ctx, cfg); err != nil { ... }
//	rules, err := nft.Ruleset(ctx) // the table, as `nft -y list table ip strait` prints it
//	err = nft.Cleanup(ctx, cfg)
package nft
