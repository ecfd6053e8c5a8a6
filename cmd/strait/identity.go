package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/trust"
)

// identity is a process' SVID source and what its node needs to know of it.
type identity struct {
	td    spiffeid.TrustDomain
	svids x509svid.Source
	local x509bundle.Source
	ca    *trust.CA
	run   func(context.Context) error
	// ready waits until svids holds an SVID. A SPIRE agent delivers the
	// first one some time after run starts; the CA issues it at once.
	ready func(context.Context) error
	// metrics are the trust metrics registered for the process.
	metrics *trust.Metrics
}

// newIdentity builds the SVID source of id's process from the identity
// section of its config file.
func newIdentity(f identityFile, id func(spiffeid.TrustDomain) (spiffeid.ID, error), log *slog.Logger, reg prometheus.Registerer) (*identity, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	td, err := spiffeid.TrustDomainFromString(f.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("identity.trustDomain: %w", err)
	}
	metrics, err := trust.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	if f.SPIREAgentSocket != "" {
		ws := trust.NewWorkloadSource(trust.WorkloadSourceConfig{Addr: f.SPIREAgentSocket, Logger: log, Metrics: metrics})
		return &identity{td: td, svids: ws, local: ws, run: ws.Run, ready: ws.WaitReady, metrics: metrics}, nil
	}
	ca, err := trust.NewCA(trust.CAConfig{TrustDomain: td, Dir: f.CADir})
	if err != nil {
		return nil, err
	}
	sid, err := id(td)
	if err != nil {
		return nil, err
	}
	src, err := trust.NewCASource(trust.CASourceConfig{CA: ca, ID: sid, TTL: time.Duration(f.SVIDTTL), Logger: log, Metrics: metrics})
	if err != nil {
		return nil, err
	}
	ready := func(context.Context) error { return nil }
	return &identity{td: td, svids: src, local: ca, ca: ca, run: src.Run, ready: ready, metrics: metrics}, nil
}

// runWhenReady runs component once the identity holds an SVID: a gateway or
// proxy started before its first SVID from the SPIRE agent would fail to
// register (a proxy's endpoint record names its SPIFFE ID) and refuse every
// handshake. It logs the SVID and warns when it is not want, the ID the
// process' peers expect.
func (id *identity) runWhenReady(ctx context.Context, want spiffeid.ID, log *slog.Logger, component func(context.Context) error) error {
	if err := id.ready(ctx); err != nil {
		return err
	}
	if svid, err := id.svids.GetX509SVID(); err == nil {
		if svid.ID != want {
			log.Warn("SVID is not the expected SPIFFE ID: peers will refuse this process", "spiffe_id", svid.ID.String(), "want", want.String())
		} else {
			log.Info("SVID ready", "spiffe_id", svid.ID.String())
		}
	}
	return component(ctx)
}

// federates parses the trust domains of identity.federates.
func (f identityFile) federates() ([]spiffeid.TrustDomain, error) {
	var out []spiffeid.TrustDomain
	for _, s := range f.Federates {
		td, err := spiffeid.TrustDomainFromString(s)
		if err != nil {
			return nil, fmt.Errorf("identity.federates: %w", err)
		}
		out = append(out, td)
	}
	return out, nil
}

// newProcessNode builds the node (cache, registrar, bundles) of a gateway or
// proxy process.
func newProcessNode(cluster string, ef etcdFile, idf identityFile, id *identity, snapshotPath string, log *slog.Logger, reg prometheus.Registerer) (*node.Node, func() error, error) {
	cli, err := federationDial(ef)
	if err != nil {
		return nil, nil, err
	}
	feds, err := idf.federates()
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	n, err := node.New(node.Config{
		Cluster: cluster, TrustDomain: id.td, Etcd: cli,
		Keyspace: keyspaceOf(ef), SnapshotPath: snapshotPath, LeaseTTL: time.Duration(ef.LeaseTTL),
		LocalBundle: id.local, CA: id.ca, Federates: feds, Logger: log, Metrics: reg, TrustMetrics: id.metrics,
	})
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	return n, cli.Close, nil
}
