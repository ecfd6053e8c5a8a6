package proxy

import (
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// registration keeps the proxy's Endpoint record in the registry in step
// with the application's health.
type registration struct {
	reg federation.Registry // nil: nothing is published
	key string
	log *slog.Logger
	now func() time.Time

	mu        sync.Mutex
	ep        *straitv1.Endpoint // the last record put
	withdrawn bool
}

// newRegistration prepares the record of the proxy's endpoint; nothing is
// put until the first health check reports.
func (p *Proxy) newRegistration(spiffeID string) *registration {
	c := p.cfg
	return &registration{
		reg: c.Registry,
		key: c.Keyspace.Endpoint(c.Cluster, c.Namespace, c.Service, c.ID),
		log: p.log,
		now: time.Now,
		ep: &straitv1.Endpoint{
			Cluster: c.Cluster, Namespace: c.Namespace, Service: c.Service, Id: c.ID,
			Address: p.advertiseAddr(), Ports: c.Ports, SpiffeId: spiffeID,
			Region: c.Region, Zone: c.Zone,
		},
	}
}

// setReady puts the record when readiness changes (and the first time).
func (r *registration) setReady(ready bool, first bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.withdrawn || (!first && r.ep.GetReady() == ready) {
		return
	}
	ep := &straitv1.Endpoint{
		Cluster: r.ep.Cluster, Namespace: r.ep.Namespace, Service: r.ep.Service, Id: r.ep.Id,
		Address: r.ep.Address, Ports: r.ep.Ports, SpiffeId: r.ep.SpiffeId, Region: r.ep.Region, Zone: r.ep.Zone,
		Ready: ready, UpdatedAt: timestamppb.New(r.now()),
	}
	r.ep = ep
	r.log.Info("endpoint readiness", logReady, ready, logKey, r.key)
	if r.reg != nil {
		r.reg.Put(r.key, ep)
	}
}

// withdraw deletes the record; later setReady calls do nothing.
func (r *registration) withdraw() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.withdrawn {
		return
	}
	r.withdrawn = true
	if r.reg != nil {
		r.reg.Delete(r.key)
		r.log.Info("endpoint withdrawn", logKey, r.key)
	}
}

// Endpoint returns the record the proxy publishes (or last published), or
// nil for a client-only proxy or before Run.
func (p *Proxy) Endpoint() *straitv1.Endpoint {
	if !p.isReady() || p.registry == nil {
		return nil
	}
	p.registry.mu.Lock()
	defer p.registry.mu.Unlock()
	return p.registry.ep
}
