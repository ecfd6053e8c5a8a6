package federation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	clientv3 "github.com/strait-mesh/strait/internal/etcdclient"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// casAttempts bounds compare-and-swap retries under contention.
const casAttempts = 10

// Store writes and reads the durable records of the keyspace: exports,
// configuration and trust bundles. Every write is validated first and
// fenced with etcd revisions (compare-and-swap), never with locks.
type Store struct {
	client *clientv3.Client
	ks     Keyspace
	now    func() time.Time
}

// NewStore returns a store over an etcd client and a keyspace.
func NewStore(client *clientv3.Client, ks Keyspace) *Store {
	return &Store{client: client, ks: ks, now: time.Now}
}

// Keyspace returns the store's keyspace.
func (s *Store) Keyspace() Keyspace { return s.ks }

// PutExport creates or updates an export and returns what was stored. A new
// export gets CreatedAt = now unless it is set; an update keeps the
// CreatedAt of the export it replaces, so that MCS conflict resolution
// (oldest export wins) is stable across edits.
func (s *Store) PutExport(ctx context.Context, e *straitv1.Export) (*straitv1.Export, error) {
	key := s.ks.Export(e.GetCluster(), e.GetNamespace(), e.GetService())
	var stored *straitv1.Export
	err := s.cas(ctx, key, func(cur []byte, exists bool) (proto.Message, error) {
		next := proto.Clone(e).(*straitv1.Export)
		if exists {
			if old, err := DecodeRecord(s.ks, key, cur); err == nil {
				if c := old.Message.(*straitv1.Export).GetCreatedAt(); c != nil {
					next.CreatedAt = c
				}
			}
		}
		if next.GetCreatedAt() == nil {
			next.CreatedAt = timestamppb.New(s.now())
		}
		stored = next
		return next, nil
	})
	if err != nil {
		return nil, err
	}
	return stored, nil
}

// GetExport returns an export, or ErrNotFound.
func (s *Store) GetExport(ctx context.Context, cluster, namespace, service string) (*straitv1.Export, error) {
	rec, err := s.get(ctx, s.ks.Export(cluster, namespace, service))
	if err != nil {
		return nil, err
	}
	return rec.Message.(*straitv1.Export), nil
}

// DeleteExport withdraws an export. It returns ErrNotFound when there was
// none.
func (s *Store) DeleteExport(ctx context.Context, cluster, namespace, service string) error {
	key := s.ks.Export(cluster, namespace, service)
	resp, err := s.client.Delete(ctx, key)
	if err != nil {
		return etcdError("delete", key, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("federation: delete %s: %w", key, ErrNotFound)
	}
	return nil
}

// PutConfig replaces the gateway configuration of a cluster, or the global
// configuration when cluster is "".
func (s *Store) PutConfig(ctx context.Context, cluster string, cfg *straitv1.GatewayConfig) error {
	return s.put(ctx, s.configKey(cluster), cfg)
}

// GetConfig returns the gateway configuration stored for a cluster (not
// merged with the global one), or the global configuration when cluster is
// "". It returns ErrNotFound when none is stored.
func (s *Store) GetConfig(ctx context.Context, cluster string) (*straitv1.GatewayConfig, error) {
	rec, err := s.get(ctx, s.configKey(cluster))
	if err != nil {
		return nil, err
	}
	return rec.Message.(*straitv1.GatewayConfig), nil
}

func (s *Store) configKey(cluster string) string {
	if cluster == "" {
		return s.ks.GlobalConfig()
	}
	return s.ks.ClusterConfig(cluster)
}

// PublishBundle publishes a trust bundle. Its sequence must be greater than
// the sequence already published for its trust domain, or PublishBundle
// returns ErrStaleBundle: bundles never roll back.
func (s *Store) PublishBundle(ctx context.Context, b *straitv1.TrustBundle) error {
	key := s.ks.Bundle(b.GetTrustDomain())
	return s.cas(ctx, key, func(cur []byte, exists bool) (proto.Message, error) {
		if exists {
			// A corrupt stored bundle is replaced: it protects nothing.
			if old, err := DecodeRecord(s.ks, key, cur); err == nil {
				if seq := old.Message.(*straitv1.TrustBundle).GetSequence(); b.GetSequence() <= seq {
					return nil, fmt.Errorf("federation: bundle %s sequence %d is not above %d: %w",
						b.GetTrustDomain(), b.GetSequence(), seq, ErrStaleBundle)
				}
			}
		}
		return b, nil
	})
}

// put validates and writes a record unconditionally.
func (s *Store) put(ctx context.Context, key string, msg proto.Message) error {
	value, err := s.encode(key, msg)
	if err != nil {
		return err
	}
	if _, err := s.client.Put(ctx, key, string(value)); err != nil {
		return etcdError("put", key, err)
	}
	return nil
}

// get reads and decodes a record.
func (s *Store) get(ctx context.Context, key string) (Record, error) {
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return Record{}, etcdError("get", key, err)
	}
	if len(resp.Kvs) == 0 {
		return Record{}, fmt.Errorf("federation: get %s: %w", key, ErrNotFound)
	}
	rec, err := DecodeRecord(s.ks, key, resp.Kvs[0].Value)
	if err != nil {
		return Record{}, err
	}
	rec.ModRevision = resp.Kvs[0].ModRevision
	return rec, nil
}

// cas reads key, asks update for the next record and writes it only if key
// did not change in between, retrying on contention.
func (s *Store) cas(ctx context.Context, key string, update func(cur []byte, exists bool) (proto.Message, error)) error {
	for range casAttempts {
		resp, err := s.client.Get(ctx, key)
		if err != nil {
			return etcdError("get", key, err)
		}
		var cur []byte
		var rev int64
		if len(resp.Kvs) > 0 {
			cur, rev = resp.Kvs[0].Value, resp.Kvs[0].ModRevision
		}
		next, err := update(cur, len(resp.Kvs) > 0)
		if err != nil {
			return err
		}
		value, err := s.encode(key, next)
		if err != nil {
			return err
		}
		txn, err := s.client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, string(value))).
			Commit()
		if err != nil {
			return etcdError("put", key, err)
		}
		if txn.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("federation: put %s: %w", key, ErrConflict)
}

// encode validates msg against key and encodes it.
func (s *Store) encode(key string, msg proto.Message) ([]byte, error) {
	info, err := s.ks.Parse(key)
	if err != nil {
		return nil, err
	}
	if err := ValidateRecord(info, msg); err != nil {
		var ire *InvalidRecordError
		if errors.As(err, &ire) {
			ire.Key = key
		}
		return nil, err
	}
	return EncodeRecord(msg)
}

// etcdError wraps an error of an etcd call, adding ErrUnavailable when etcd
// could not be reached (no connection, no leader, or the deadline passed).
func etcdError(op, key string, err error) error {
	if isUnavailable(err) {
		return fmt.Errorf("federation: %s %s: %w: %w", op, key, ErrUnavailable, err)
	}
	return fmt.Errorf("federation: %s %s: %w", op, key, err)
}

// isUnavailable reports whether err means etcd could not serve the call.
func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrNoLeader) ||
		errors.Is(err, rpctypes.ErrTimeout) || errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}
