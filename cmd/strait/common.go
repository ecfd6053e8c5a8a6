package main

import (
	"context"
	"errors"
	"log/slog"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/internal/node"
)

// version is the Strait version gateways announce.
const version = "0.1.0-dev"

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func federationDial(ef etcdFile) (*clientv3.Client, error) {
	return federation.Dial(ef.clientConfig())
}

func keyspaceOf(ef etcdFile) federation.Keyspace {
	return federation.Keyspace{Prefix: ef.Prefix}
}

// afterSync runs component once the node's federation cache holds a
// snapshot (listed from etcd, or read from the snapshot file while etcd is
// down), so that a process never serves from an empty view: a gateway
// restarted during an etcd outage would otherwise refuse connections as
// NOT_EXPORTED until its snapshot file was loaded.
func afterSync(ctx context.Context, n *node.Node, log *slog.Logger, component func(context.Context) error) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-n.Cache.Synced():
	}
	snap := n.Cache.Snapshot()
	log.Info("federation snapshot ready", "revision", snap.Revision(), "from_disk", n.Cache.FromDisk())
	return component(ctx)
}
