package etcdlite

import (
	"context"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Event is a change of a watched key.
type Event = mvccpb.Event

// The types of Event.
const (
	EventTypePut    = mvccpb.PUT
	EventTypeDelete = mvccpb.DELETE
)

// WatchChan delivers a watch's responses.
type WatchChan <-chan WatchResponse

// WatchResponse is one response of a watch: events, a progress
// notification, or why the watch ended (Err).
type WatchResponse struct {
	// Header is never nil.
	Header *ResponseHeader
	Events []*Event
	// CompactRevision is set when the watch's start revision was
	// compacted: the watch has ended.
	CompactRevision int64
	// Canceled is set when the watch has ended; Err tells why.
	Canceled bool
	// Created is never delivered (as clientv3 without WithCreatedNotify).
	Created bool
	// CancelReason is etcd's reason for a cancellation.
	CancelReason string

	closeErr error
}

// Err is why the watch ended, or nil.
func (wr *WatchResponse) Err() error {
	switch {
	case wr.closeErr != nil:
		return rpctypes.Error(wr.closeErr)
	case wr.CompactRevision != 0:
		return rpctypes.ErrCompacted
	case wr.Canceled:
		if wr.CancelReason != "" {
			return rpctypes.Error(status.Error(codes.FailedPrecondition, wr.CancelReason))
		}
		return rpctypes.ErrFutureRev
	}
	return nil
}

// IsProgressNotify reports whether the response is a progress
// notification: every event up to Header.Revision has been delivered.
func (wr *WatchResponse) IsProgressNotify() bool {
	return len(wr.Events) == 0 && !wr.Canceled && !wr.Created && wr.CompactRevision == 0 && wr.Header.GetRevision() != 0
}

// watchStream is the gRPC stream of one watch.
type watchStream struct {
	mu     sync.Mutex // serializes SendMsg
	stream grpc.ClientStream
}

func (w *watchStream) send(req []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stream.SendMsg(rawRequest(req))
}

// watchDesc describes etcd's Watch stream.
var watchDesc = grpc.StreamDesc{StreamName: "Watch", ServerStreams: true, ClientStreams: true}

// progressRequest is a WatchRequest holding an (empty) progress_request.
var progressRequest = appendMessage(nil, 3, nil)

// Watch watches key (or the range its options give, WithPrefix), from the
// revision of WithRev (zero means from now), on a stream of its own. The
// channel closes when ctx ends or the client closes, and after a response
// whose Err() is not nil: a compacted start revision (ErrCompacted), a
// member without a leader (with WithRequireLeader), a failed stream.
// Creating the stream waits for a connection, bounded by ctx.
func (c *Client) Watch(ctx context.Context, key string, opts ...OpOption) WatchChan {
	op := newOp(opGet, key, opts)
	ch := make(chan WatchResponse)
	go c.runWatch(ctx, op, ch)
	return ch
}

func (c *Client) runWatch(ctx context.Context, op Op, ch chan<- WatchResponse) {
	defer close(ch)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	// deliver hands a response over unless the watch is over.
	deliver := func(wr WatchResponse) bool {
		select {
		case ch <- wr:
			return true
		case <-ctx.Done():
			return false
		}
	}
	fail := func(err error) {
		if ctx.Err() == nil {
			deliver(WatchResponse{Header: &ResponseHeader{}, Canceled: true, closeErr: toErr(ctx, err)})
		}
	}
	stream, err := c.conn.NewStream(ctx, &watchDesc, methodWatch, callOpts...)
	if err != nil {
		fail(err)
		return
	}
	ws := &watchStream{stream: stream}
	// A WatchRequest holding a create_request: key 1, range_end 2,
	// start_revision 3.
	create := appendBytes(nil, 1, op.key)
	create = appendBytes(create, 2, op.end)
	create = appendInt(create, 3, op.rev)
	create = appendMessage(nil, 1, create)
	if err := ws.send(create); err != nil {
		fail(err)
		return
	}
	c.mu.Lock()
	c.streams[ws] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.streams, ws)
		c.mu.Unlock()
	}()
	for {
		resp := &watchResponse{}
		if err := stream.RecvMsg(resp); err != nil {
			fail(err)
			return
		}
		wr := WatchResponse{
			Header: resp.header, Events: resp.events, CompactRevision: resp.compactRevision,
			Canceled: resp.canceled, CancelReason: resp.cancelReason,
		}
		switch {
		case resp.created && !resp.canceled && resp.compactRevision == 0:
			// The watch is in place; nothing to deliver.
		case resp.canceled || resp.compactRevision != 0:
			wr.Canceled = true
			deliver(wr)
			return
		default:
			if !deliver(wr) {
				return
			}
		}
	}
}

// RequestProgress asks every watch of the client for a progress
// notification: a response without events whose header revision all the
// watch's events up to have been delivered.
func (c *Client) RequestProgress(ctx context.Context) error {
	c.mu.Lock()
	streams := make([]*watchStream, 0, len(c.streams))
	for ws := range c.streams {
		streams = append(streams, ws)
	}
	c.mu.Unlock()
	var first error
	for _, ws := range streams {
		if err := ws.send(progressRequest); err != nil && first == nil {
			first = toErr(ctx, err)
		}
	}
	return first
}
