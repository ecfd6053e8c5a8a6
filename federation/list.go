package federation

import (
	"context"

	clientv3 "github.com/strait-mesh/strait/internal/etcdclient"
)

// ListSnapshot reads the whole keyspace once, at one revision, into a
// snapshot: for tools such as `strait status` that do not watch. Records
// that fail to decode or validate, and endpoints whose SPIFFE ID may not
// serve their service, are skipped and returned as invalid.
func ListSnapshot(ctx context.Context, client *clientv3.Client, ks Keyspace) (snap *Snapshot, invalid []error, err error) {
	kvs, rev, err := listAll(ctx, client, ks, DefaultPageSize)
	if err != nil {
		return nil, nil, err
	}
	records := make([]Record, 0, len(kvs))
	for _, kv := range kvs {
		rec, err := DecodeRecord(ks, string(kv.Key), kv.Value)
		if err != nil {
			invalid = append(invalid, err)
			continue
		}
		rec.ModRevision = kv.ModRevision
		records = append(records, rec)
	}
	snap = NewSnapshot(rev, records)
	for _, r := range snap.RejectedEndpoints() {
		invalid = append(invalid, &InvalidRecordError{Key: r.Record.Key, Kind: KindEndpoint, Reason: ReasonServerIdentity, Err: r.Err})
	}
	return snap, invalid, nil
}
