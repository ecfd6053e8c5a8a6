package gateway

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
	"github.com/strait-mesh/strait/trust"
)

// record is the gateway's own Gateway record.
func (g *Gateway) record(draining bool) *straitv1.Gateway {
	id, err := trust.GatewayID(g.cfg.TrustDomain, g.cfg.Cluster)
	spiffeID := ""
	if err == nil {
		spiffeID = id.String()
	}
	return &straitv1.Gateway{
		Cluster:       g.cfg.Cluster,
		Id:            g.cfg.ID,
		TrustDomain:   g.cfg.TrustDomain.Name(),
		SpiffeId:      spiffeID,
		Address:       or(g.cfg.IngressAdvertiseAddr, g.ingressAddr.String()),
		EgressAddress: or(g.cfg.EgressAdvertiseAddr, g.egressLn.Addr().String()),
		AdminAddress:  g.adminLn.Addr().String(),
		Region:        g.cfg.Region,
		Zone:          g.cfg.Zone,
		StartedAt:     timestamppb.New(g.cfg.Now()),
		Version:       g.cfg.Version,
		Draining:      draining,
	}
}

// register puts the gateway's record through the Registry, if any.
func (g *Gateway) register() {
	g.recordKey = g.cfg.Keyspace.Gateway(g.cfg.Cluster, g.cfg.ID)
	if g.cfg.Registry != nil {
		g.cfg.Registry.Put(g.recordKey, g.record(false))
	}
}

// withdraw announces the drain and then deletes the record, so that peers
// stop choosing this gateway for new streams.
func (g *Gateway) withdraw() {
	if g.cfg.Registry == nil || g.recordKey == "" {
		return
	}
	g.cfg.Registry.Put(g.recordKey, g.record(true))
	g.cfg.Registry.Delete(g.recordKey)
}
