package cmdutil

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/trust"
)

// Identity is a process' SVID source and what its node needs to know of it.
type Identity struct {
	// TrustDomain is the process' trust domain.
	TrustDomain spiffeid.TrustDomain
	// SVIDs serves the process' SVID.
	SVIDs x509svid.Source
	// Local serves the trust domain's own bundle.
	Local x509bundle.Source
	// CA is the built-in CA, nil with SPIRE.
	CA *trust.CA
	// Metrics are the trust metrics registered for the process.
	Metrics *trust.Metrics

	run func(context.Context) error
	// ready waits until SVIDs holds an SVID. A SPIRE agent delivers the
	// first one some time after run starts; the CA issues it at once.
	ready func(context.Context) error
}

// NewIdentity builds the SVID source of a process from the identity section
// of its config file; id names the process' SPIFFE ID in a trust domain.
func NewIdentity(f IdentityFile, id func(spiffeid.TrustDomain) (spiffeid.ID, error), log *slog.Logger, reg prometheus.Registerer) (*Identity, error) {
	if err := f.Validate(); err != nil {
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
		return &Identity{TrustDomain: td, SVIDs: ws, Local: ws, Metrics: metrics, run: ws.Run, ready: ws.WaitReady}, nil
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
	return &Identity{TrustDomain: td, SVIDs: src, Local: ca, CA: ca, Metrics: metrics, run: src.Run, ready: ready}, nil
}

// Run keeps the SVID fresh until ctx ends.
func (id *Identity) Run(ctx context.Context) error { return id.run(ctx) }

// RunWhenReady runs component once the identity holds an SVID: a gateway or
// proxy started before its first SVID from the SPIRE agent would fail to
// register (a proxy's endpoint record names its SPIFFE ID) and refuse every
// handshake. It logs the SVID and warns when it is not want, the ID the
// process' peers expect.
func (id *Identity) RunWhenReady(ctx context.Context, want spiffeid.ID, log *slog.Logger, component func(context.Context) error) error {
	if err := id.ready(ctx); err != nil {
		return err
	}
	if svid, err := id.SVIDs.GetX509SVID(); err == nil {
		if svid.ID != want {
			log.Warn("SVID is not the expected SPIFFE ID: peers will refuse this process", "spiffe_id", svid.ID.String(), "want", want.String())
		} else {
			log.Info("SVID ready", "spiffe_id", svid.ID.String())
		}
	}
	return component(ctx)
}

// federates parses the trust domains of identity.federates.
func (i IdentityFile) federates() ([]spiffeid.TrustDomain, error) {
	var out []spiffeid.TrustDomain
	for _, s := range i.Federates {
		td, err := spiffeid.TrustDomainFromString(s)
		if err != nil {
			return nil, fmt.Errorf("identity.federates: %w", err)
		}
		out = append(out, td)
	}
	return out, nil
}

// NewNode builds the node (cache, registrar, bundles) of a gateway or proxy
// process. The returned function closes its etcd client.
func NewNode(cluster string, ef EtcdFile, idf IdentityFile, id *Identity, snapshotPath string, log *slog.Logger, reg prometheus.Registerer) (*node.Node, func() error, error) {
	cli, err := federation.Dial(ef.ClientConfig())
	if err != nil {
		return nil, nil, err
	}
	feds, err := idf.federates()
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	n, err := node.New(node.Config{
		Cluster: cluster, TrustDomain: id.TrustDomain, Etcd: cli,
		Keyspace: ef.Keyspace(), SnapshotPath: snapshotPath, LeaseTTL: time.Duration(ef.LeaseTTL),
		LocalBundle: id.Local, CA: id.CA, Federates: feds, Logger: log, Metrics: reg, TrustMetrics: id.Metrics,
	})
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	return n, cli.Close, nil
}

// AfterSync runs component once the node's federation cache holds a
// snapshot (listed from etcd, or read from the snapshot file while etcd is
// down), so that a process never serves from an empty view: a gateway
// restarted during an etcd outage would otherwise refuse connections as
// NOT_EXPORTED until its snapshot file was loaded.
func AfterSync(ctx context.Context, n *node.Node, log *slog.Logger, component func(context.Context) error) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-n.Cache.Synced():
	}
	snap := n.Cache.Snapshot()
	log.Info("federation snapshot ready", "revision", snap.Revision(), "from_disk", n.Cache.FromDisk())
	return component(ctx)
}

// IgnoreCanceled returns nil for a context cancellation (an interrupted
// command ends without an error) and err otherwise.
func IgnoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
