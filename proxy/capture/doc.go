// Package capture redirects a pod's outbound TCP connections and DNS
// queries to its Strait proxy, the way Istio's init container does, and
// tells the proxy where a redirected connection was going.
//
// Config describes the rules; package nft (proxy/capture/nft) installs
// them: its Install programs nftables over netlink (github.com/google/nftables;
// no iptables or nft command, so it runs from Strait's distroless image,
// and it needs CAP_NET_ADMIN only) in the current network namespace: run
// it inside the pod's, as the init container's strait-init does. The
// proxy imports this package alone, so that the sidecar binary links no
// nftables or netlink code. Install creates one table,
// "ip strait", whose one chain "output" (type nat, hook output, priority
// dstnat -100, policy accept) holds, in order (nft.Rules gives the text):
//
//	meta mark 0x00005354 return        the proxy's own connections (Mark)
//	meta skuid 1337 return             each of ExcludeUIDs
//	meta skgid 1337 return             each of ExcludeGIDs
//	ip daddr 127.0.0.0/8 return        loopback, then each of ExcludeCIDRs
//	tcp dport 22 return                each of ExcludePorts
//	udp dport 53 redirect to :15053    DNS → DNSPort (unless NoDNS)
//	tcp dport 53 redirect to :15053
//	meta l4proto tcp redirect to :15001  other TCP → OutboundPort
//
// Everything else (other UDP, ICMP) passes. The table is IPv4 only, as
// the proxy's listeners are: IPv6 traffic is not captured.
//
// nft.Install replaces the whole table in one netlink transaction, so running
// it twice is harmless and no packet sees half the rules; Cleanup deletes
// the table and is a no-op when it is absent. List and Ruleset read the
// rules back from the kernel and print them in nft syntax (Ruleset as
// `nft -y list table ip strait` does), for tests and for the init
// container's log.
//
// The proxy marks every connection it dials with Mark (see DialerControl;
// setting SO_MARK needs CAP_NET_ADMIN) so that its own traffic is not
// captured again; a proxy that runs without that capability, as an
// injected sidecar does, is excluded by its group (ExcludeGIDs) instead.
// OriginalDst reads the original destination of a redirected connection
// (SO_ORIGINAL_DST, which the conntrack entry of an nft redirect keeps).
//
//	err := nft.Install(ctx, capture.Config{ExcludeGIDs: []uint32{1337}})
//	rules, err := nft.Ruleset(ctx) // the table, as nft lists it
//	err = nft.Cleanup(ctx, capture.Config{})
//	d := net.Dialer{Control: capture.DialerControl(capture.DefaultMark)}
package capture
