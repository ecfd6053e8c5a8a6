package etcdlite

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Responses of the key-value calls: etcd's own messages.
type (
	GetResponse    = pb.RangeResponse
	PutResponse    = pb.PutResponse
	DeleteResponse = pb.DeleteRangeResponse
	TxnResponse    = pb.TxnResponse
)

// opType is what an Op does.
type opType int

const (
	opGet opType = iota
	opPut
	opDelete
)

// Op is one operation of a transaction (OpPut, OpDelete), or the options
// of a call.
type Op struct {
	t         opType
	key, end  []byte
	val       []byte
	rev       int64
	limit     int64
	lease     LeaseID
	countOnly bool
}

// OpOption sets an option of an operation.
type OpOption func(*Op)

func newOp(t opType, key string, opts []OpOption) Op {
	op := Op{t: t, key: []byte(key)}
	for _, o := range opts {
		o(&op)
	}
	return op
}

// WithRange makes the operation cover [key, end).
func WithRange(end string) OpOption { return func(op *Op) { op.end = []byte(end) } }

// WithPrefix makes the operation cover every key that starts with its key.
func WithPrefix() OpOption {
	return func(op *Op) {
		if len(op.key) == 0 {
			op.key, op.end = []byte{0}, []byte{0}
			return
		}
		op.end = []byte(GetPrefixRangeEnd(string(op.key)))
	}
}

// WithLimit bounds the number of keys a read returns. Zero means no bound.
func WithLimit(n int64) OpOption { return func(op *Op) { op.limit = n } }

// WithRev makes a read at revision rev (zero means the latest), or a watch
// start at it.
func WithRev(rev int64) OpOption { return func(op *Op) { op.rev = rev } }

// WithLease attaches a put to a lease.
func WithLease(id LeaseID) OpOption { return func(op *Op) { op.lease = id } }

// WithCountOnly makes a read return the number of keys only.
func WithCountOnly() OpOption { return func(op *Op) { op.countOnly = true } }

// GetPrefixRangeEnd is the end of the range of the keys that start with
// prefix.
func GetPrefixRangeEnd(prefix string) string {
	end := []byte(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return string(end[:i+1])
		}
	}
	// Every byte is 0xff: the range runs to the end of the keyspace.
	return "\x00"
}

// OpPut is a put of a transaction.
func OpPut(key, val string, opts ...OpOption) Op {
	op := newOp(opPut, key, opts)
	op.val = []byte(val)
	return op
}

// OpDelete is a deletion of a transaction.
func OpDelete(key string, opts ...OpOption) Op { return newOp(opDelete, key, opts) }

// OpGet is a read of a transaction.
func OpGet(key string, opts ...OpOption) Op { return newOp(opGet, key, opts) }

func (op Op) rangeRequest() *pb.RangeRequest {
	return &pb.RangeRequest{Key: op.key, RangeEnd: op.end, Limit: op.limit, Revision: op.rev, CountOnly: op.countOnly}
}

func (op Op) putRequest() *pb.PutRequest {
	return &pb.PutRequest{Key: op.key, Value: op.val, Lease: int64(op.lease)}
}

func (op Op) deleteRequest() *pb.DeleteRangeRequest {
	return &pb.DeleteRangeRequest{Key: op.key, RangeEnd: op.end}
}

func (op Op) requestOp() *pb.RequestOp {
	switch op.t {
	case opPut:
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: op.putRequest()}}
	case opDelete:
		return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: op.deleteRequest()}}
	default:
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: op.rangeRequest()}}
	}
}

// Get reads key (or the range its options give).
func (c *Client) Get(ctx context.Context, key string, opts ...OpOption) (*GetResponse, error) {
	resp, err := c.kv.Range(ctx, newOp(opGet, key, opts).rangeRequest(), callOpts...)
	return resp, toErr(ctx, err)
}

// Put writes val to key.
func (c *Client) Put(ctx context.Context, key, val string, opts ...OpOption) (*PutResponse, error) {
	op := newOp(opPut, key, opts)
	op.val = []byte(val)
	resp, err := c.kv.Put(ctx, op.putRequest(), callOpts...)
	return resp, toErr(ctx, err)
}

// Delete deletes key (or the range its options give).
func (c *Client) Delete(ctx context.Context, key string, opts ...OpOption) (*DeleteResponse, error) {
	resp, err := c.kv.DeleteRange(ctx, newOp(opDelete, key, opts).deleteRequest(), callOpts...)
	return resp, toErr(ctx, err)
}

// Cmp is a comparison of a transaction's If.
type Cmp struct{ c *pb.Compare }

// ModRevision compares the revision of key's last write.
func ModRevision(key string) Cmp { return Cmp{&pb.Compare{Key: []byte(key), Target: pb.Compare_MOD}} }

// CreateRevision compares the revision of key's creation.
func CreateRevision(key string) Cmp {
	return Cmp{&pb.Compare{Key: []byte(key), Target: pb.Compare_CREATE}}
}

// Version compares key's number of writes since its creation.
func Version(key string) Cmp { return Cmp{&pb.Compare{Key: []byte(key), Target: pb.Compare_VERSION}} }

// Value compares key's value.
func Value(key string) Cmp { return Cmp{&pb.Compare{Key: []byte(key), Target: pb.Compare_VALUE}} }

// Compare completes cmp with an operator ("=", "!=", ">" or "<") and the
// value to compare with: an integer for revisions and versions, a string
// for values. Like clientv3's, it panics on an operator or a value of the
// wrong kind, a programming error.
func Compare(target Cmp, result string, v any) Cmp {
	if target.c == nil {
		panic("etcdlite: comparison without a target")
	}
	cmp := &pb.Compare{Key: target.c.Key, RangeEnd: target.c.RangeEnd, Target: target.c.Target}
	switch result {
	case "=":
		cmp.Result = pb.Compare_EQUAL
	case "!=":
		cmp.Result = pb.Compare_NOT_EQUAL
	case ">":
		cmp.Result = pb.Compare_GREATER
	case "<":
		cmp.Result = pb.Compare_LESS
	default:
		panic(fmt.Sprintf("etcdlite: unknown comparison %q", result))
	}
	if cmp.Target == pb.Compare_VALUE {
		s, ok := v.(string)
		if !ok {
			panic(fmt.Sprintf("etcdlite: value comparison with %T", v))
		}
		cmp.TargetUnion = &pb.Compare_Value{Value: []byte(s)}
		return Cmp{cmp}
	}
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case int:
		n = int64(x)
	case LeaseID:
		n = int64(x)
	default:
		panic(fmt.Sprintf("etcdlite: revision comparison with %T", v))
	}
	switch cmp.Target {
	case pb.Compare_MOD:
		cmp.TargetUnion = &pb.Compare_ModRevision{ModRevision: n}
	case pb.Compare_CREATE:
		cmp.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: n}
	default:
		cmp.TargetUnion = &pb.Compare_Version{Version: n}
	}
	return Cmp{cmp}
}

// Txn is a transaction: If its comparisons hold, Then its operations run,
// else its Else operations.
type Txn struct {
	c   *Client
	ctx context.Context
	req pb.TxnRequest
}

// Txn starts a transaction.
func (c *Client) Txn(ctx context.Context) *Txn { return &Txn{c: c, ctx: ctx} }

// If adds comparisons.
func (t *Txn) If(cmps ...Cmp) *Txn {
	for _, cmp := range cmps {
		t.req.Compare = append(t.req.Compare, cmp.c)
	}
	return t
}

// Then adds the operations that run when the comparisons hold.
func (t *Txn) Then(ops ...Op) *Txn {
	for _, op := range ops {
		t.req.Success = append(t.req.Success, op.requestOp())
	}
	return t
}

// Else adds the operations that run when a comparison fails.
func (t *Txn) Else(ops ...Op) *Txn {
	for _, op := range ops {
		t.req.Failure = append(t.req.Failure, op.requestOp())
	}
	return t
}

// Commit runs the transaction.
func (t *Txn) Commit() (*TxnResponse, error) {
	resp, err := t.c.kv.Txn(t.ctx, &t.req, callOpts...)
	return resp, toErr(t.ctx, err)
}
