package wan

import "sync/atomic"

// Stats counts what a link did since it was created.
type Stats struct {
	Name            string   `json:"name"`
	Partitioned     bool     `json:"partitioned"`      // the whole link
	PartitionedFrom []string `json:"partitioned_from"` // client prefixes cut by PartitionFrom
	Partitions      int64    `json:"partitions"`       // partitions started

	TCPAccepted     int64 `json:"tcp_accepted"`
	TCPActive       int64 `json:"tcp_active"`
	TCPRefused      int64 `json:"tcp_refused"`       // reset on accept or by a partition
	TCPDialFailures int64 `json:"tcp_dial_failures"` // failed dials to a backend
	TCPBytesForward int64 `json:"tcp_bytes_forward"`
	TCPBytesReverse int64 `json:"tcp_bytes_reverse"`

	UDPFlows            int64 `json:"udp_flows"` // active
	UDPDatagramsForward int64 `json:"udp_datagrams_forward"`
	UDPDatagramsReverse int64 `json:"udp_datagrams_reverse"`
	UDPDroppedLoss      int64 `json:"udp_dropped_loss"`
	UDPDroppedPartition int64 `json:"udp_dropped_partition"`
}

type counters struct {
	partitions atomic.Int64

	tcpAccepted, tcpActive, tcpRefused, tcpDialFailures atomic.Int64
	tcpBytesForward, tcpBytesReverse                    atomic.Int64

	udpFlows, udpForward, udpReverse, udpDroppedLoss, udpDroppedPartition atomic.Int64
}

// Stats returns a snapshot of the link's counters.
func (l *Link) Stats() Stats {
	c := &l.stats
	st := l.current()
	var from []string
	for _, p := range st.cut {
		from = append(from, p.String())
	}
	return Stats{
		Name:                l.cfg.Name,
		Partitioned:         st.all,
		PartitionedFrom:     from,
		Partitions:          c.partitions.Load(),
		TCPAccepted:         c.tcpAccepted.Load(),
		TCPActive:           c.tcpActive.Load(),
		TCPRefused:          c.tcpRefused.Load(),
		TCPDialFailures:     c.tcpDialFailures.Load(),
		TCPBytesForward:     c.tcpBytesForward.Load(),
		TCPBytesReverse:     c.tcpBytesReverse.Load(),
		UDPFlows:            c.udpFlows.Load(),
		UDPDatagramsForward: c.udpForward.Load(),
		UDPDatagramsReverse: c.udpReverse.Load(),
		UDPDroppedLoss:      c.udpDroppedLoss.Load(),
		UDPDroppedPartition: c.udpDroppedPartition.Load(),
	}
}
