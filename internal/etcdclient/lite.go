//go:build straitetcdlite

package etcdclient

import (
	"context"

	"github.com/strait-mesh/strait/internal/etcdlite"
)

// The types of etcdlite that federation uses, under clientv3's names.
type (
	Client        = etcdlite.Client
	Config        = etcdlite.Config
	LeaseID       = etcdlite.LeaseID
	Op            = etcdlite.Op
	OpOption      = etcdlite.OpOption
	Cmp           = etcdlite.Cmp
	WatchChan     = etcdlite.WatchChan
	WatchResponse = etcdlite.WatchResponse
	// Logger is the type of Config.Logger.
	Logger = etcdlite.Logger
)

// The constants of etcdlite that federation uses, under clientv3's names.
const (
	NoLease         = etcdlite.NoLease
	EventTypePut    = etcdlite.EventTypePut
	EventTypeDelete = etcdlite.EventTypeDelete
)

// NopLogger is a Config.Logger; etcdlite logs nothing.
func NopLogger() *Logger { return nil }

// New is etcdlite.New.
func New(cfg Config) (*Client, error) { return etcdlite.New(cfg) }

// WithRequireLeader is etcdlite.WithRequireLeader.
func WithRequireLeader(ctx context.Context) context.Context { return etcdlite.WithRequireLeader(ctx) }

// GetPrefixRangeEnd is etcdlite.GetPrefixRangeEnd.
func GetPrefixRangeEnd(prefix string) string { return etcdlite.GetPrefixRangeEnd(prefix) }

// WithRange is etcdlite.WithRange.
func WithRange(end string) OpOption { return etcdlite.WithRange(end) }

// WithPrefix is etcdlite.WithPrefix.
func WithPrefix() OpOption { return etcdlite.WithPrefix() }

// WithLimit is etcdlite.WithLimit.
func WithLimit(n int64) OpOption { return etcdlite.WithLimit(n) }

// WithRev is etcdlite.WithRev.
func WithRev(rev int64) OpOption { return etcdlite.WithRev(rev) }

// WithLease is etcdlite.WithLease.
func WithLease(id LeaseID) OpOption { return etcdlite.WithLease(id) }

// OpPut is etcdlite.OpPut.
func OpPut(key, val string, opts ...OpOption) Op { return etcdlite.OpPut(key, val, opts...) }

// OpDelete is etcdlite.OpDelete.
func OpDelete(key string, opts ...OpOption) Op { return etcdlite.OpDelete(key, opts...) }

// ModRevision is etcdlite.ModRevision.
func ModRevision(key string) Cmp { return etcdlite.ModRevision(key) }

// Compare is etcdlite.Compare.
func Compare(cmp Cmp, result string, v any) Cmp { return etcdlite.Compare(cmp, result, v) }
