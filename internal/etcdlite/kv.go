package etcdlite

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
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

func (op Op) rangeRequest() []byte {
	b := appendBytes(nil, 1, op.key)
	b = appendBytes(b, 2, op.end)
	b = appendInt(b, 3, op.limit)
	b = appendInt(b, 4, op.rev)
	return appendBool(b, 9, op.countOnly)
}

func (op Op) putRequest() []byte {
	b := appendBytes(nil, 1, op.key)
	b = appendBytes(b, 2, op.val)
	return appendInt(b, 3, int64(op.lease))
}

func (op Op) deleteRequest() []byte {
	b := appendBytes(nil, 1, op.key)
	return appendBytes(b, 2, op.end)
}

// requestOp is the operation as a RequestOp of a transaction.
func (op Op) requestOp() []byte {
	switch op.t {
	case opPut:
		return appendMessage(nil, 2, op.putRequest())
	case opDelete:
		return appendMessage(nil, 3, op.deleteRequest())
	default:
		return appendMessage(nil, 1, op.rangeRequest())
	}
}

// Get reads key (or the range its options give).
func (c *Client) Get(ctx context.Context, key string, opts ...OpOption) (*GetResponse, error) {
	resp := &GetResponse{}
	if err := c.invoke(ctx, methodRange, newOp(opGet, key, opts).rangeRequest(), resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// Put writes val to key.
func (c *Client) Put(ctx context.Context, key, val string, opts ...OpOption) (*PutResponse, error) {
	op := newOp(opPut, key, opts)
	op.val = []byte(val)
	resp := &PutResponse{}
	if err := c.invoke(ctx, methodPut, op.putRequest(), resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// Delete deletes key (or the range its options give).
func (c *Client) Delete(ctx context.Context, key string, opts ...OpOption) (*DeleteResponse, error) {
	resp := &DeleteResponse{}
	if err := c.invoke(ctx, methodDeleteRange, newOp(opDelete, key, opts).deleteRequest(), resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// Targets and results of a comparison (etcd's Compare.CompareTarget and
// Compare.CompareResult).
const (
	targetVersion = 0
	targetCreate  = 1
	targetMod     = 2
	targetValue   = 3

	resultEqual    = 0
	resultGreater  = 1
	resultLess     = 2
	resultNotEqual = 3
)

// Cmp is a comparison of a transaction's If.
type Cmp struct {
	target, result int
	key            []byte
	n              int64  // a revision or version
	value          []byte // for targetValue
	complete       bool   // Compare made it
}

// ModRevision compares the revision of key's last write.
func ModRevision(key string) Cmp { return Cmp{target: targetMod, key: []byte(key)} }

// CreateRevision compares the revision of key's creation.
func CreateRevision(key string) Cmp { return Cmp{target: targetCreate, key: []byte(key)} }

// Version compares key's number of writes since its creation.
func Version(key string) Cmp { return Cmp{target: targetVersion, key: []byte(key)} }

// Value compares key's value.
func Value(key string) Cmp { return Cmp{target: targetValue, key: []byte(key)} }

// Compare completes cmp with an operator ("=", "!=", ">" or "<") and the
// value to compare with: an integer for revisions and versions, a string
// for values. Like clientv3's, it panics on an operator or a value of the
// wrong kind, a programming error.
func Compare(cmp Cmp, result string, v any) Cmp {
	switch result {
	case "=":
		cmp.result = resultEqual
	case "!=":
		cmp.result = resultNotEqual
	case ">":
		cmp.result = resultGreater
	case "<":
		cmp.result = resultLess
	default:
		panic(fmt.Sprintf("etcdlite: unknown comparison %q", result))
	}
	cmp.complete = true
	if cmp.target == targetValue {
		s, ok := v.(string)
		if !ok {
			panic(fmt.Sprintf("etcdlite: value comparison with %T", v))
		}
		cmp.value = []byte(s)
		return cmp
	}
	switch x := v.(type) {
	case int64:
		cmp.n = x
	case int:
		cmp.n = int64(x)
	case LeaseID:
		cmp.n = int64(x)
	default:
		panic(fmt.Sprintf("etcdlite: revision comparison with %T", v))
	}
	return cmp
}

// encode is the comparison as etcd's Compare message: result 1, target 2,
// key 3, and one of version 4, create_revision 5, mod_revision 6, value 7.
func (cmp Cmp) encode() []byte {
	if !cmp.complete {
		panic("etcdlite: comparison without Compare")
	}
	b := appendInt(nil, 1, int64(cmp.result))
	b = appendInt(b, 2, int64(cmp.target))
	b = appendBytes(b, 3, cmp.key)
	switch cmp.target {
	case targetValue:
		return appendMessage(b, 7, cmp.value)
	case targetMod:
		return appendVarint(b, 6, cmp.n)
	case targetCreate:
		return appendVarint(b, 5, cmp.n)
	default:
		return appendVarint(b, protowire.Number(4), cmp.n)
	}
}

// Txn is a transaction: If its comparisons hold, Then its operations run,
// else its Else operations.
type Txn struct {
	c   *Client
	ctx context.Context
	req []byte // compare 1, success 2, failure 3
}

// Txn starts a transaction.
func (c *Client) Txn(ctx context.Context) *Txn { return &Txn{c: c, ctx: ctx} }

// If adds comparisons.
func (t *Txn) If(cmps ...Cmp) *Txn {
	for _, cmp := range cmps {
		t.req = appendMessage(t.req, 1, cmp.encode())
	}
	return t
}

// Then adds the operations that run when the comparisons hold.
func (t *Txn) Then(ops ...Op) *Txn {
	for _, op := range ops {
		t.req = appendMessage(t.req, 2, op.requestOp())
	}
	return t
}

// Else adds the operations that run when a comparison fails.
func (t *Txn) Else(ops ...Op) *Txn {
	for _, op := range ops {
		t.req = appendMessage(t.req, 3, op.requestOp())
	}
	return t
}

// Commit runs the transaction.
func (t *Txn) Commit() (*TxnResponse, error) {
	resp := &TxnResponse{}
	if err := t.c.invoke(t.ctx, methodTxn, t.req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}
