package etcdlite

import (
	"context"
	"time"

	"google.golang.org/grpc"
)

// LeaseID is an etcd lease.
type LeaseID int64

// NoLease is no lease.
const NoLease LeaseID = 0

// LeaseGrantResponse is the answer to Grant.
type LeaseGrantResponse struct {
	*ResponseHeader
	ID    LeaseID
	TTL   int64
	Error string
}

// LeaseKeepAliveResponse is one answer to a keepalive.
type LeaseKeepAliveResponse struct {
	*ResponseHeader
	ID  LeaseID
	TTL int64
}

// LeaseTimeToLiveResponse is the answer to TimeToLive: TTL is the remaining
// time in seconds, -1 for an expired lease.
type LeaseTimeToLiveResponse struct {
	*ResponseHeader
	ID         LeaseID
	TTL        int64
	GrantedTTL int64
	Keys       [][]byte
}

// LeaseRevokeResponse is the answer to Revoke.
type LeaseRevokeResponse struct {
	Header *ResponseHeader
}

// keepAliveRetry is the pause before a keepalive is sent again without an
// answer, or before a failed keepalive stream is opened again (clientv3's
// retryConnWait).
const keepAliveRetry = 500 * time.Millisecond

// keepAliveDesc describes etcd's LeaseKeepAlive stream.
var keepAliveDesc = grpc.StreamDesc{StreamName: "LeaseKeepAlive", ServerStreams: true, ClientStreams: true}

// keepAliveChSize is the buffer of a keepalive channel: answers that find
// it full are dropped (clientv3's LeaseResponseChSize).
const keepAliveChSize = 16

// Grant grants a lease of ttl seconds.
func (c *Client) Grant(ctx context.Context, ttl int64) (*LeaseGrantResponse, error) {
	resp := &leaseResponse{}
	if err := c.invoke(ctx, methodLeaseGrant, leaseRequest(ttl), resp); err != nil {
		return nil, err
	}
	return &LeaseGrantResponse{ResponseHeader: resp.header, ID: LeaseID(resp.id), TTL: resp.ttl, Error: resp.errMsg}, nil
}

// Revoke revokes a lease: etcd deletes its keys.
func (c *Client) Revoke(ctx context.Context, id LeaseID) (*LeaseRevokeResponse, error) {
	resp := &leaseResponse{}
	if err := c.invoke(ctx, methodLeaseRevoke, leaseRequest(int64(id)), resp); err != nil {
		return nil, err
	}
	return &LeaseRevokeResponse{Header: resp.header}, nil
}

// TimeToLive asks for a lease's remaining time.
func (c *Client) TimeToLive(ctx context.Context, id LeaseID) (*LeaseTimeToLiveResponse, error) {
	resp := &leaseResponse{}
	if err := c.invoke(ctx, methodLeaseTTL, leaseRequest(int64(id)), resp); err != nil {
		return nil, err
	}
	return &LeaseTimeToLiveResponse{ResponseHeader: resp.header, ID: LeaseID(resp.id), TTL: resp.ttl,
		GrantedTTL: resp.grantedTTL, Keys: resp.keys}, nil
}

// KeepAlive keeps lease id alive until ctx ends or the client closes: a
// keepalive at once, then one a third of the TTL after each answer (every
// 500ms while one goes unanswered), reopening its stream after a failure.
// Answers go to the channel (dropped when its buffer of 16 is full). The
// channel closes when ctx ends, the client closes, etcd answers that the
// lease is gone, or no answer came for the lease's TTL (the first answer
// for DialTimeout plus a second): the lease may have expired.
func (c *Client) KeepAlive(ctx context.Context, id LeaseID) (<-chan *LeaseKeepAliveResponse, error) {
	ch := make(chan *LeaseKeepAliveResponse, keepAliveChSize)
	go c.keepAlive(ctx, id, ch)
	return ch, nil
}

// keepAliveAnswer is what a keepalive stream's receiver reports.
type keepAliveAnswer struct {
	resp *leaseResponse
	err  error
}

// openedStream is a keepalive stream that was opened, or why not.
type openedStream struct {
	stream grpc.ClientStream
	cancel context.CancelFunc
	err    error
}

func (c *Client) keepAlive(ctx context.Context, id LeaseID, ch chan<- *LeaseKeepAliveResponse) {
	defer close(ch)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream and its receiver, or an opening
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()

	deadline := time.NewTimer(c.firstKeepAliveTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(keepAliveRetry)
	defer tick.Stop()
	req := leaseRequest(int64(id))
	var (
		next     = time.Now() // when the next keepalive is due
		reopenAt time.Time    // when a failed stream may be opened again
		stream   *openedStream
		opening  chan *openedStream // an opening in progress
		answers  chan keepAliveAnswer
	)
	drop := func() {
		stream.cancel()
		stream, answers, reopenAt = nil, nil, time.Now().Add(keepAliveRetry)
	}
	for {
		now := time.Now()
		if stream == nil && opening == nil && !now.Before(reopenAt) {
			// Opening waits for a connection: it runs beside the loop so
			// that the deadline still applies.
			opening = make(chan *openedStream, 1)
			go func(done chan<- *openedStream) {
				sctx, scancel := context.WithCancel(ctx)
				s, err := c.conn.NewStream(sctx, &keepAliveDesc, methodLeaseKeepAlive, callOpts...)
				done <- &openedStream{stream: s, cancel: scancel, err: err}
			}(opening)
		}
		if stream != nil && !now.Before(next) {
			if err := stream.stream.SendMsg(req); err != nil {
				drop()
			} else {
				// Again in 500ms unless an answer sets the next one.
				next = now.Add(keepAliveRetry)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
		case o := <-opening:
			opening = nil
			if o.err != nil {
				o.cancel()
				reopenAt = time.Now().Add(keepAliveRetry)
				continue
			}
			stream, answers = o, make(chan keepAliveAnswer, 1)
			go receiveKeepAlives(ctx, o.stream, answers)
		case a := <-answers:
			if a.err != nil {
				drop()
				continue
			}
			if a.resp.ttl <= 0 {
				return // the lease is gone
			}
			ttl := time.Duration(a.resp.ttl) * time.Second
			deadline.Reset(ttl)
			next = time.Now().Add(ttl / 3)
			select {
			case ch <- &LeaseKeepAliveResponse{ResponseHeader: a.resp.header, ID: LeaseID(a.resp.id), TTL: a.resp.ttl}:
			default:
			}
		}
	}
}

// receiveKeepAlives passes a keepalive stream's answers on until it fails.
func receiveKeepAlives(ctx context.Context, s grpc.ClientStream, answers chan<- keepAliveAnswer) {
	for {
		resp := &leaseResponse{}
		err := s.RecvMsg(resp)
		select {
		case answers <- keepAliveAnswer{resp: resp, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}
