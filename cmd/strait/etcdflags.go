package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strait-mesh/strait/federation"
	"github.com/strait-mesh/strait/federation/embedded"
)

// etcdFlags are the flags of every command that talks to etcd.
type etcdFlags struct {
	endpoints []string
	cert      string
	key       string
	ca        string
	prefix    string
	timeout   time.Duration
}

// addEtcdFlags adds --etcd, --etcd-cert, --etcd-key, --etcd-ca, --prefix and
// --etcd-timeout to cmd.
func addEtcdFlags(cmd *cobra.Command) *etcdFlags {
	f := &etcdFlags{}
	fs := cmd.Flags()
	fs.StringSliceVar(&f.endpoints, "etcd", []string{embedded.DefaultClientURL},
		"etcd client URLs, comma-separated (the default is where 'strait dev' serves)")
	fs.StringVar(&f.cert, "etcd-cert", "", "client certificate (PEM) for etcd TLS client auth")
	fs.StringVar(&f.key, "etcd-key", "", "client key (PEM) for etcd TLS client auth")
	fs.StringVar(&f.ca, "etcd-ca", "", "CA bundle (PEM) that verifies the etcd server")
	fs.StringVar(&f.prefix, "prefix", federation.DefaultPrefix, "etcd key prefix of the federation keyspace")
	fs.DurationVar(&f.timeout, "etcd-timeout", 10*time.Second, "how long one-shot commands wait for etcd")
	return f
}

// keyspace is the keyspace the flags name.
func (f *etcdFlags) keyspace() federation.Keyspace {
	return federation.Keyspace{Prefix: f.prefix}
}

// clientConfig is the federation client configuration the flags name.
func (f *etcdFlags) clientConfig() federation.ClientConfig {
	return federation.ClientConfig{
		Endpoints: f.endpoints,
		CertFile:  f.cert,
		KeyFile:   f.key,
		CAFile:    f.ca,
	}
}

// client dials etcd. The caller closes the client.
func (f *etcdFlags) client(context.Context) (*clientv3.Client, error) {
	cli, err := federation.Dial(f.clientConfig())
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	return cli, nil
}

// withTimeout bounds a one-shot command's etcd calls.
func (f *etcdFlags) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if f.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, f.timeout)
}

// do runs one command's etcd work under --etcd-timeout, with a client that
// is closed afterwards.
func (f *etcdFlags) do(ctx context.Context, work func(ctx context.Context, cli *clientv3.Client) error) error {
	ctx, cancel := f.withTimeout(ctx)
	defer cancel()
	cli, err := f.client(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	return work(ctx, cli)
}

// withStore is do with the federation store of the flags' keyspace.
func (f *etcdFlags) withStore(ctx context.Context, work func(ctx context.Context, st *federation.Store) error) error {
	return f.do(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		return work(ctx, federation.NewStore(cli, f.keyspace()))
	})
}
