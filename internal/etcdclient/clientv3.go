//go:build !straitetcdlite

package etcdclient

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The types of go.etcd.io/etcd/client/v3 that federation uses.
type (
	Client        = clientv3.Client
	Config        = clientv3.Config
	LeaseID       = clientv3.LeaseID
	Op            = clientv3.Op
	OpOption      = clientv3.OpOption
	Cmp           = clientv3.Cmp
	WatchChan     = clientv3.WatchChan
	WatchResponse = clientv3.WatchResponse
	// Logger is the type of Config.Logger.
	Logger = zap.Logger
)

// The constants of go.etcd.io/etcd/client/v3 that federation uses.
const (
	NoLease         = clientv3.NoLease
	EventTypePut    = clientv3.EventTypePut
	EventTypeDelete = clientv3.EventTypeDelete
)

// NopLogger is a Config.Logger that discards the client's logs.
func NopLogger() *Logger { return zap.NewNop() }

// New is clientv3.New.
func New(cfg Config) (*Client, error) { return clientv3.New(cfg) }

// WithRequireLeader is clientv3.WithRequireLeader.
func WithRequireLeader(ctx context.Context) context.Context { return clientv3.WithRequireLeader(ctx) }

// GetPrefixRangeEnd is clientv3.GetPrefixRangeEnd.
func GetPrefixRangeEnd(prefix string) string { return clientv3.GetPrefixRangeEnd(prefix) }

// WithRange is clientv3.WithRange.
func WithRange(end string) OpOption { return clientv3.WithRange(end) }

// WithPrefix is clientv3.WithPrefix.
func WithPrefix() OpOption { return clientv3.WithPrefix() }

// WithLimit is clientv3.WithLimit.
func WithLimit(n int64) OpOption { return clientv3.WithLimit(n) }

// WithRev is clientv3.WithRev.
func WithRev(rev int64) OpOption { return clientv3.WithRev(rev) }

// WithLease is clientv3.WithLease.
func WithLease(id LeaseID) OpOption { return clientv3.WithLease(id) }

// OpPut is clientv3.OpPut.
func OpPut(key, val string, opts ...OpOption) Op { return clientv3.OpPut(key, val, opts...) }

// OpDelete is clientv3.OpDelete.
func OpDelete(key string, opts ...OpOption) Op { return clientv3.OpDelete(key, opts...) }

// ModRevision is clientv3.ModRevision.
func ModRevision(key string) Cmp { return clientv3.ModRevision(key) }

// Compare is clientv3.Compare.
func Compare(cmp Cmp, result string, v any) Cmp { return clientv3.Compare(cmp, result, v) }
