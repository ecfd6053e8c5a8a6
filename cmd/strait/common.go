package main

import (
	"context"
	"errors"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/federation"
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
