package federation

import (
	"context"
	"fmt"

	clientv3 "github.com/strait-mesh/strait/internal/etcdclient"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// BundleKey is the etcd key of one trust domain's bundle as it is, for the
// bundle's publisher: unlike the watch cache, which keeps the last valid
// record of a key, it shows a deletion and junk written over the record,
// which the publisher must repair. It satisfies trust.BundleKey.
type BundleKey struct {
	client *clientv3.Client
	key    string
	ks     Keyspace
}

// BundleKey returns the bundle key of a trust domain.
func (s *Store) BundleKey(trustDomain string) *BundleKey {
	return &BundleKey{client: s.client, key: s.ks.Bundle(trustDomain), ks: s.ks}
}

// Read returns what the key holds: exists is false when the key is absent;
// rec is nil when it exists but does not hold a valid TrustBundle record
// (junk). err reports only a failed read.
func (k *BundleKey) Read(ctx context.Context) (rec *straitv1.TrustBundle, exists bool, err error) {
	resp, err := k.client.Get(ctx, k.key)
	if err != nil {
		return nil, false, etcdError("get", k.key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, false, nil
	}
	r, err := DecodeRecord(k.ks, k.key, resp.Kvs[0].Value)
	if err != nil {
		return nil, true, nil
	}
	b, ok := r.Message.(*straitv1.TrustBundle)
	if !ok {
		return nil, true, nil
	}
	return b, true, nil
}

// Watch calls changed after every write or deletion of the key until ctx
// is done or the watch fails, and returns why it stopped. A watch that
// cannot reach the etcd leader fails instead of hanging.
func (k *BundleKey) Watch(ctx context.Context, changed func()) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range k.client.Watch(wctx, k.key) {
		if err := resp.Err(); err != nil {
			return fmt.Errorf("federation: watch %s: %w", k.key, err)
		}
		if len(resp.Events) > 0 {
			changed()
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("federation: watch %s: %w", k.key, errWatchClosed)
}
