package etcdlite

import (
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
)

// The client encodes etcd's requests and decodes its responses itself,
// field by field in protobuf's wire format, instead of through the
// generated messages of go.etcd.io/etcd/api/v3/etcdserverpb: those bring
// etcd's whole API descriptor (and the grpc-gateway and Google API
// annotations it imports), built in memory at the first call. The field
// numbers are those of etcd's rpc.proto and kv.proto (etcd API v3).

// The gRPC methods the client calls.
const (
	methodRange          = "/etcdserverpb.KV/Range"
	methodPut            = "/etcdserverpb.KV/Put"
	methodDeleteRange    = "/etcdserverpb.KV/DeleteRange"
	methodTxn            = "/etcdserverpb.KV/Txn"
	methodWatch          = "/etcdserverpb.Watch/Watch"
	methodLeaseGrant     = "/etcdserverpb.Lease/LeaseGrant"
	methodLeaseRevoke    = "/etcdserverpb.Lease/LeaseRevoke"
	methodLeaseKeepAlive = "/etcdserverpb.Lease/LeaseKeepAlive"
	methodLeaseTTL       = "/etcdserverpb.Lease/LeaseTimeToLive"
)

// errMalformed is wrapped by every error about a response that does not
// decode.
var errMalformed = errors.New("etcdlite: malformed response")

// rawRequest is an encoded request message.
type rawRequest []byte

// response is a response message that decodes itself.
type response interface {
	unmarshal(b []byte) error
}

// codec is the gRPC codec of the client's calls: rawRequest out, response
// in. Its name is proto's, the content type etcd serves.
type codec struct{}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) ([]byte, error) {
	r, ok := v.(rawRequest)
	if !ok {
		return nil, fmt.Errorf("etcdlite: cannot marshal %T", v)
	}
	return r, nil
}

func (codec) Unmarshal(b []byte, v any) error {
	r, ok := v.(response)
	if !ok {
		return fmt.Errorf("etcdlite: cannot unmarshal into %T", v)
	}
	return r.unmarshal(b)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	return appendMessage(b, num, v)
}

// appendMessage appends an embedded message (or bytes) even when empty: a
// oneof member's presence is its meaning.
func appendMessage(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendInt(b []byte, num protowire.Number, v int64) []byte {
	if v == 0 {
		return b
	}
	return appendVarint(b, num, v)
}

// appendVarint appends an integer even when zero (a oneof member).
func appendVarint(b []byte, num protowire.Number, v int64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}

func appendBool(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return appendVarint(b, num, 1)
}

// field is one field of a message: v for a varint, p (aliasing the
// message) for bytes and embedded messages.
type field struct {
	num   protowire.Number
	isInt bool
	v     uint64
	p     []byte
}

func (f field) int64() int64 { return int64(f.v) }

// eachField calls fn with each varint and length-delimited field of the
// message b, and skips the fields of other wire types.
func eachField(b []byte, fn func(f field) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		f := field{num: num}
		switch typ {
		case protowire.VarintType:
			f.isInt = true
			f.v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			f.p, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n >= 0 {
				b = b[n:]
				continue
			}
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %w", errMalformed, num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// bytesOf copies a field's bytes: gRPC reuses the buffer of a message
// once it is decoded.
func bytesOf(f field) []byte {
	if f.isInt || len(f.p) == 0 {
		return nil
	}
	return append([]byte(nil), f.p...)
}

// ResponseHeader is the header of every response.
type ResponseHeader struct {
	ClusterId, MemberId uint64
	Revision            int64
	RaftTerm            uint64
}

// GetRevision is the header's revision, 0 for a nil header.
func (h *ResponseHeader) GetRevision() int64 {
	if h == nil {
		return 0
	}
	return h.Revision
}

func decodeHeader(f field) (*ResponseHeader, error) {
	h := &ResponseHeader{}
	if f.isInt {
		return nil, fmt.Errorf("%w: header is a varint", errMalformed)
	}
	err := eachField(f.p, func(f field) error {
		if !f.isInt {
			return nil
		}
		switch f.num {
		case 1:
			h.ClusterId = f.v
		case 2:
			h.MemberId = f.v
		case 3:
			h.Revision = f.int64()
		case 4:
			h.RaftTerm = f.v
		}
		return nil
	})
	return h, err
}

func decodeKeyValue(f field) (*mvccpb.KeyValue, error) {
	if f.isInt {
		return nil, fmt.Errorf("%w: key-value is a varint", errMalformed)
	}
	kv := &mvccpb.KeyValue{}
	err := eachField(f.p, func(f field) error {
		switch {
		case f.num == 1 && !f.isInt:
			kv.Key = bytesOf(f)
		case f.num == 2 && f.isInt:
			kv.CreateRevision = f.int64()
		case f.num == 3 && f.isInt:
			kv.ModRevision = f.int64()
		case f.num == 4 && f.isInt:
			kv.Version = f.int64()
		case f.num == 5 && !f.isInt:
			kv.Value = bytesOf(f)
		case f.num == 6 && f.isInt:
			kv.Lease = f.int64()
		}
		return nil
	})
	return kv, err
}

func decodeEvent(f field) (*mvccpb.Event, error) {
	if f.isInt {
		return nil, fmt.Errorf("%w: event is a varint", errMalformed)
	}
	ev := &mvccpb.Event{}
	err := eachField(f.p, func(f field) error {
		var err error
		switch {
		case f.num == 1 && f.isInt:
			ev.Type = mvccpb.Event_EventType(f.v)
		case f.num == 2:
			ev.Kv, err = decodeKeyValue(f)
		case f.num == 3:
			ev.PrevKv, err = decodeKeyValue(f)
		}
		return err
	})
	if err == nil && ev.Kv == nil {
		err = fmt.Errorf("%w: event without a key-value", errMalformed)
	}
	return ev, err
}

// GetResponse is the answer to Get.
type GetResponse struct {
	Header *ResponseHeader
	Kvs    []*mvccpb.KeyValue
	More   bool
	Count  int64
}

func (r *GetResponse) unmarshal(b []byte) error {
	return withHeader(&r.Header, eachField(b, func(f field) error {
		var err error
		switch {
		case f.num == 1:
			r.Header, err = decodeHeader(f)
		case f.num == 2:
			var kv *mvccpb.KeyValue
			kv, err = decodeKeyValue(f)
			r.Kvs = append(r.Kvs, kv)
		case f.num == 3 && f.isInt:
			r.More = f.v != 0
		case f.num == 4 && f.isInt:
			r.Count = f.int64()
		}
		return err
	}))
}

// withHeader is err, or an error when the response had no header: every
// etcd response has one, and callers read it.
func withHeader(h **ResponseHeader, err error) error {
	if err == nil && *h == nil {
		return fmt.Errorf("%w: no header", errMalformed)
	}
	return err
}

// headerOnly decodes a response's header and the fields fn takes.
func headerOnly(b []byte, h **ResponseHeader, fn func(f field)) error {
	return withHeader(h, eachField(b, func(f field) error {
		if f.num == 1 {
			var err error
			*h, err = decodeHeader(f)
			return err
		}
		if fn != nil {
			fn(f)
		}
		return nil
	}))
}

// PutResponse is the answer to Put.
type PutResponse struct {
	Header *ResponseHeader
}

func (r *PutResponse) unmarshal(b []byte) error { return headerOnly(b, &r.Header, nil) }

// DeleteResponse is the answer to Delete.
type DeleteResponse struct {
	Header  *ResponseHeader
	Deleted int64
}

func (r *DeleteResponse) unmarshal(b []byte) error {
	return headerOnly(b, &r.Header, func(f field) {
		if f.num == 2 && f.isInt {
			r.Deleted = f.int64()
		}
	})
}

// TxnResponse is the answer to a transaction (without the responses of
// its operations).
type TxnResponse struct {
	Header    *ResponseHeader
	Succeeded bool
}

func (r *TxnResponse) unmarshal(b []byte) error {
	return headerOnly(b, &r.Header, func(f field) {
		if f.num == 2 && f.isInt {
			r.Succeeded = f.v != 0
		}
	})
}

// watchResponse is one message of a watch stream.
type watchResponse struct {
	header          *ResponseHeader
	created         bool
	canceled        bool
	compactRevision int64
	cancelReason    string
	events          []*mvccpb.Event
}

func (r *watchResponse) unmarshal(b []byte) error {
	return withHeader(&r.header, eachField(b, func(f field) error {
		var err error
		switch {
		case f.num == 1:
			r.header, err = decodeHeader(f)
		case f.num == 3 && f.isInt:
			r.created = f.v != 0
		case f.num == 4 && f.isInt:
			r.canceled = f.v != 0
		case f.num == 5 && f.isInt:
			r.compactRevision = f.int64()
		case f.num == 6 && !f.isInt:
			r.cancelReason = string(f.p)
		case f.num == 11:
			var ev *mvccpb.Event
			ev, err = decodeEvent(f)
			r.events = append(r.events, ev)
		}
		return err
	}))
}

// leaseResponse is the answer to a lease call: grant, revoke, keepalive,
// time to live.
type leaseResponse struct {
	header     *ResponseHeader
	id         int64
	ttl        int64
	grantedTTL int64
	errMsg     string
	keys       [][]byte
}

func (r *leaseResponse) unmarshal(b []byte) error {
	return headerOnly(b, &r.header, func(f field) {
		switch {
		case f.num == 2 && f.isInt:
			r.id = f.int64()
		case f.num == 3 && f.isInt:
			r.ttl = f.int64()
		case f.num == 4 && f.isInt:
			r.grantedTTL = f.int64() // LeaseTimeToLiveResponse
		case f.num == 4 && !f.isInt:
			r.errMsg = string(f.p) // LeaseGrantResponse
		case f.num == 5 && !f.isInt:
			r.keys = append(r.keys, bytesOf(f))
		}
	})
}

// leaseRequest encodes a lease request whose only field is a number
// (TTL for a grant, ID otherwise).
func leaseRequest(n int64) rawRequest { return rawRequest(appendInt(nil, 1, n)) }
