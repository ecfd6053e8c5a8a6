package etcdlite

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// The requests the client encodes decode, with etcd's generated messages,
// to what was asked.
func TestEncodeRequests(t *testing.T) {
	var rr pb.RangeRequest
	if err := proto.Unmarshal(newOp(opGet, "/a/", []OpOption{WithPrefix(), WithLimit(7), WithRev(42), WithCountOnly()}).rangeRequest(), &rr); err != nil {
		t.Fatal(err)
	}
	if string(rr.Key) != "/a/" || string(rr.RangeEnd) != "/a0" || rr.Limit != 7 || rr.Revision != 42 || !rr.CountOnly {
		t.Errorf("range request %v", &rr)
	}
	txn := (&Txn{}).
		If(Compare(ModRevision("/k"), "=", 0), Compare(Value("/v"), "!=", "x"), Compare(CreateRevision("/c"), ">", int64(3)), Compare(Version("/n"), "<", 2)).
		Then(OpPut("/k", "val", WithLease(9)), OpDelete("/d", WithPrefix())).
		Else(OpGet("/g"))
	var tr pb.TxnRequest
	if err := proto.Unmarshal(txn.req, &tr); err != nil {
		t.Fatal(err)
	}
	want := &pb.TxnRequest{
		Compare: []*pb.Compare{
			{Key: []byte("/k"), Target: pb.Compare_MOD, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_ModRevision{ModRevision: 0}},
			{Key: []byte("/v"), Target: pb.Compare_VALUE, Result: pb.Compare_NOT_EQUAL, TargetUnion: &pb.Compare_Value{Value: []byte("x")}},
			{Key: []byte("/c"), Target: pb.Compare_CREATE, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_CreateRevision{CreateRevision: 3}},
			{Key: []byte("/n"), Target: pb.Compare_VERSION, Result: pb.Compare_LESS, TargetUnion: &pb.Compare_Version{Version: 2}},
		},
		Success: []*pb.RequestOp{
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("/k"), Value: []byte("val"), Lease: 9}}},
			{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("/d"), RangeEnd: []byte("/e")}}},
		},
		Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("/g")}}}},
	}
	if !proto.Equal(&tr, want) {
		t.Errorf("txn request\n%v\nwant\n%v", &tr, want)
	}
	var wr pb.WatchRequest
	if err := proto.Unmarshal(progressRequest, &wr); err != nil || wr.GetProgressRequest() == nil {
		t.Errorf("progress request %v (%v)", &wr, err)
	}
	var gr pb.LeaseKeepAliveRequest
	if err := proto.Unmarshal(leaseRequest(-5), &gr); err != nil || gr.ID != -5 {
		t.Errorf("lease request %v (%v)", &gr, err)
	}
}

// The responses etcd's generated messages encode decode to the same
// fields.
func TestDecodeResponses(t *testing.T) {
	hdr := &pb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: 300, RaftTerm: 4}
	kv := &mvccpb.KeyValue{Key: []byte("/k"), CreateRevision: 5, ModRevision: 6, Version: 7, Value: []byte("v"), Lease: 8}
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var get GetResponse
	if err := get.unmarshal(marshal(&pb.RangeResponse{Header: hdr, Kvs: []*mvccpb.KeyValue{kv, {Key: []byte("/l")}}, More: true, Count: 9})); err != nil {
		t.Fatal(err)
	}
	if *get.Header != (ResponseHeader{1, 2, 300, 4}) || len(get.Kvs) != 2 || !proto.Equal(get.Kvs[0], kv) ||
		string(get.Kvs[1].Key) != "/l" || !get.More || get.Count != 9 {
		t.Errorf("get response %+v", get)
	}
	var w watchResponse
	if err := w.unmarshal(marshal(&pb.WatchResponse{Header: hdr, WatchId: 3, Canceled: true, CompactRevision: 11, CancelReason: "why",
		Events: []*mvccpb.Event{{Type: mvccpb.DELETE, Kv: kv, PrevKv: kv}}})); err != nil {
		t.Fatal(err)
	}
	if w.header.Revision != 300 || w.created || !w.canceled || w.compactRevision != 11 || w.cancelReason != "why" ||
		len(w.events) != 1 || w.events[0].Type != mvccpb.DELETE || !proto.Equal(w.events[0].Kv, kv) || !proto.Equal(w.events[0].PrevKv, kv) {
		t.Errorf("watch response %+v", w)
	}
	var l leaseResponse
	if err := l.unmarshal(marshal(&pb.LeaseTimeToLiveResponse{Header: hdr, ID: 12, TTL: -1, GrantedTTL: 30, Keys: [][]byte{[]byte("a"), []byte("b")}})); err != nil {
		t.Fatal(err)
	}
	if l.id != 12 || l.ttl != -1 || l.grantedTTL != 30 || len(l.keys) != 2 || string(l.keys[1]) != "b" {
		t.Errorf("lease response %+v", l)
	}
	var txn TxnResponse
	if err := txn.unmarshal(marshal(&pb.TxnResponse{Header: hdr, Succeeded: true})); err != nil || !txn.Succeeded {
		t.Errorf("txn response %+v (%v)", txn, err)
	}
	var del DeleteResponse
	if err := del.unmarshal(marshal(&pb.DeleteRangeResponse{Header: hdr, Deleted: 3})); err != nil || del.Deleted != 3 {
		t.Errorf("delete response %+v (%v)", del, err)
	}
	// Decoded bytes are copies: gRPC reuses its buffer.
	b := marshal(&pb.RangeResponse{Header: hdr, Kvs: []*mvccpb.KeyValue{kv}})
	var again GetResponse
	if err := again.unmarshal(b); err != nil {
		t.Fatal(err)
	}
	clear(b)
	if string(again.Kvs[0].Value) != "v" {
		t.Errorf("value %q after the buffer was cleared, want a copy", again.Kvs[0].Value)
	}
	// A response without a header, or cut short, is refused.
	for _, bad := range [][]byte{marshal(&pb.RangeResponse{Count: 1}), b[:len(b)-1], {0x0a, 0x05, 0x18}} {
		var r GetResponse
		if err := r.unmarshal(bad); !errors.Is(err, errMalformed) {
			t.Errorf("unmarshal %x: %v, want errMalformed", bad, err)
		}
	}
}

// FuzzDecode feeds arbitrary bytes to every response decoder: none may
// panic, and a decoded response holds a header and no nil key-value.
func FuzzDecode(f *testing.F) {
	hdr := &pb.ResponseHeader{Revision: 3}
	kv := &mvccpb.KeyValue{Key: []byte("/k"), Value: []byte("v"), ModRevision: 3}
	for _, m := range []proto.Message{
		&pb.RangeResponse{Header: hdr, Kvs: []*mvccpb.KeyValue{kv}, More: true},
		&pb.WatchResponse{Header: hdr, Events: []*mvccpb.Event{{Kv: kv}}, CompactRevision: 2},
		&pb.LeaseGrantResponse{Header: hdr, ID: 1, TTL: 5, Error: "e"},
		&pb.TxnResponse{Header: hdr, Succeeded: true},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var get GetResponse
		if get.unmarshal(b) == nil {
			if get.Header == nil {
				t.Fatal("get response without a header")
			}
			for _, kv := range get.Kvs {
				if kv == nil {
					t.Fatal("nil key-value")
				}
			}
		}
		var w watchResponse
		if w.unmarshal(b) == nil {
			if w.header == nil {
				t.Fatal("watch response without a header")
			}
			for _, ev := range w.events {
				if ev == nil || ev.Kv == nil {
					t.Fatal("event without a key-value")
				}
			}
		}
		var l leaseResponse
		_ = l.unmarshal(b)
		var txn TxnResponse
		_ = txn.unmarshal(b)
		var del DeleteResponse
		_ = del.unmarshal(b)
		var put PutResponse
		_ = put.unmarshal(b)
	})
}
