package federation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-multierror"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	clientv3 "github.com/strait-mesh/strait/internal/etcdclient"
)

// DefaultLeaseTTL is the TTL of a registrar's lease when none is configured.
const DefaultLeaseTTL = 10 * time.Second

// maxTxnOps bounds the operations of one transaction (etcd's default limit
// is 128).
const maxTxnOps = 64

// errLeaseLost ends a registrar session whose lease is gone.
var errLeaseLost = errors.New("lease lost")

// RegistrarConfig configures a Registrar.
type RegistrarConfig struct {
	// Client is the etcd client. Required.
	Client *clientv3.Client
	// Keyspace validates the keys and records put. Zero means DefaultPrefix.
	Keyspace Keyspace
	// TTL is the lease TTL: records disappear this long after the process
	// dies. Zero means DefaultLeaseTTL. etcd rounds it to whole seconds and
	// enforces a minimum of about 2s.
	TTL time.Duration
	// Heartbeat, when positive, is how often gateway records are rewritten
	// (unchanged), the health signal caches check with
	// CacheConfig.GatewayStaleAfter. Each rewrite is a raft entry: 2,000
	// gateways at a third of a 10s TTL cost etcd 600 writes per second.
	// Zero or negative (the default) disables it: records are written only
	// when their content changes, and liveness rides on the lease alone,
	// whose keepalives are not raft proposals (etcd forwards them to the
	// leader's lessor). Enable it only for caches that set
	// GatewayStaleAfter.
	Heartbeat time.Duration
	// RetryMin and RetryMax bound the jittered exponential backoff between
	// attempts to grant a lease after the last one was lost or could not
	// be granted, and between retries of a failed write. The backoff
	// starts over only once a lease has been held, with every record
	// written, for a whole TTL: a registrar whose leases keep being lost
	// (etcd overloaded, keepalives unanswered) waits longer each time
	// instead of granting and writing everything again at once. Zero means
	// 200ms and 5s.
	RetryMin, RetryMax time.Duration
	// RevokeTimeout bounds the lease revocation on shutdown. Zero means 2s.
	RevokeTimeout time.Duration
	// Logger receives lease and write errors. Nil discards them.
	Logger *slog.Logger
}

func (c *RegistrarConfig) populate() {
	if c.TTL == 0 {
		c.TTL = DefaultLeaseTTL
	}
	if c.RetryMin == 0 {
		c.RetryMin = 200 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.RevokeTimeout == 0 {
		c.RevokeTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

func (c *RegistrarConfig) validate() error {
	var errs *multierror.Error
	if c.Client == nil {
		errs = multierror.Append(errs, errors.New("client is required"))
	}
	if c.TTL < time.Second {
		errs = multierror.Append(errs, fmt.Errorf("TTL %s is less than 1s", c.TTL))
	}
	if c.RetryMin < 0 || c.RetryMax < c.RetryMin {
		errs = multierror.Append(errs, fmt.Errorf("retry backoff %s-%s is not a range", c.RetryMin, c.RetryMax))
	}
	if c.RevokeTimeout < 0 {
		errs = multierror.Append(errs, errors.New("revoke timeout is negative"))
	}
	if err := errs.ErrorOrNil(); err != nil {
		return fmt.Errorf("federation: registrar config: %w", err)
	}
	return nil
}

// Registrar keeps leased records (a gateway's Gateway record, a proxy's
// Endpoint records) in etcd while it runs. It implements Registry.
//
// Run grants a lease, keeps it alive and writes every record under it; a
// record is written again only when its content changes. When the
// keepalives stop being answered, Run asks etcd whether the lease still
// lives and, if it does, keeps it alive again without writing anything.
// When the lease is gone (it expired while etcd was unreachable, or was
// revoked) Run grants a new one, after a backoff that grows while leases
// keep being lost, and writes everything again. When Run's context is
// cancelled it revokes the lease, which withdraws the records at once.
// Put and Delete may be called at any time, before or while Run runs.
type Registrar struct {
	cfg RegistrarConfig

	mu      sync.Mutex
	desired map[string][]byte   // key → encoded record
	deletes map[string]struct{} // keys to delete from etcd
	kick    chan struct{}       // buffered(1): desired or deletes changed

	running    atomic.Bool
	lease      atomic.Int64
	registered chan struct{}
	regOnce    sync.Once
}

var _ Registry = (*Registrar)(nil)

// NewRegistrar returns a registrar; call Run to start it.
func NewRegistrar(cfg RegistrarConfig) (*Registrar, error) {
	cfg.populate()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Registrar{
		cfg:        cfg,
		desired:    map[string][]byte{},
		deletes:    map[string]struct{}{},
		kick:       make(chan struct{}, 1),
		registered: make(chan struct{}),
	}, nil
}

// Put implements Registry. The record is validated first: an invalid record
// is logged and not written, since every reader would reject it.
func (r *Registrar) Put(key string, msg proto.Message) {
	info, err := r.cfg.Keyspace.Parse(key)
	if err == nil {
		err = ValidateRecord(info, msg)
	}
	var value []byte
	if err == nil {
		value, err = EncodeRecord(msg)
	}
	if err != nil {
		r.cfg.Logger.Error("federation: registrar refused a record", logKey, key, logError, err)
		return
	}
	r.mu.Lock()
	r.desired[key] = value
	delete(r.deletes, key)
	r.mu.Unlock()
	r.poke()
}

// Delete implements Registry.
func (r *Registrar) Delete(key string) {
	r.mu.Lock()
	delete(r.desired, key)
	r.deletes[key] = struct{}{}
	r.mu.Unlock()
	r.poke()
}

func (r *Registrar) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Registered is closed once every record put so far has been written under
// a lease for the first time.
func (r *Registrar) Registered() <-chan struct{} { return r.registered }

// LeaseID returns the current lease, or clientv3.NoLease while there is none.
func (r *Registrar) LeaseID() clientv3.LeaseID { return clientv3.LeaseID(r.lease.Load()) }

// Run keeps the records registered until ctx is cancelled, then revokes the
// lease and returns ctx.Err(). It may be called once.
func (r *Registrar) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("federation: registrar: Run called twice")
	}
	bo := backoff{min: r.cfg.RetryMin, max: r.cfg.RetryMax}
	for {
		err := r.session(ctx, &bo)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d := bo.next()
		r.cfg.Logger.Warn("federation: lease lost, registering again", logError, err, logRetryIn, d)
		if !sleepCtx(ctx.Done(), d) {
			return ctx.Err()
		}
	}
}

// session grants one lease and keeps the records written under it until the
// lease is lost or ctx is cancelled.
func (r *Registrar) session(ctx context.Context, bo *backoff) error {
	gctx, cancel := context.WithTimeout(ctx, r.cfg.TTL)
	grant, err := r.cfg.Client.Grant(gctx, int64((r.cfg.TTL+time.Second-1)/time.Second))
	cancel()
	if err != nil {
		return fmt.Errorf("federation: grant lease: %w", err)
	}
	id := grant.ID
	// Keepalives outlive ctx so that the lease is still ours to revoke.
	kaCtx, kaCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer kaCancel()
	ka, err := r.cfg.Client.KeepAlive(kaCtx, id)
	if err != nil {
		return fmt.Errorf("federation: keep lease %x alive: %w", id, err)
	}
	r.lease.Store(int64(id))
	defer r.lease.Store(int64(clientv3.NoLease))
	r.cfg.Logger.Info("federation: lease granted", logLease, fmt.Sprintf("%x", id), logTTL, grant.TTL)

	written := map[string][]byte{}
	dirty := true
	var retry <-chan time.Time
	// stable fires once the lease has been held for a TTL since every
	// record was written without a failure: only then does the backoff
	// start over.
	var stable <-chan time.Time
	var heartbeat <-chan time.Time
	if r.cfg.Heartbeat > 0 {
		t := time.NewTicker(r.cfg.Heartbeat)
		defer t.Stop()
		heartbeat = t.C
	}
	for {
		if dirty {
			dirty = false
			err := r.sync(ctx, id, written)
			switch {
			case err == nil:
				r.regOnce.Do(func() { close(r.registered) })
				if stable == nil && bo.attempt > 0 {
					stable = time.After(r.cfg.TTL)
				}
			case errors.Is(err, rpctypes.ErrLeaseNotFound):
				return fmt.Errorf("federation: write under lease %x: %w", id, err)
			case ctx.Err() == nil:
				stable = nil
				d := bo.next()
				r.cfg.Logger.Warn("federation: registrar write failed", logError, err, logRetryIn, d)
				retry = time.After(d)
			}
		}
		select {
		case <-ctx.Done():
			r.revoke(id)
			return ctx.Err()
		case _, ok := <-ka:
			if ok {
				continue
			}
			// The client stopped waiting for keepalive answers (none came
			// within the TTL) or etcd said the lease is gone. Under
			// overload the lease often still lives: keep it and its
			// records rather than granting a new one and writing
			// everything again.
			stable = nil
			alive, err := r.leaseAlive(ctx, id, bo)
			if ctx.Err() != nil {
				r.revoke(id)
				return ctx.Err()
			}
			if err != nil || !alive {
				return fmt.Errorf("federation: lease %x: %w", id, errLeaseLost)
			}
			if ka, err = r.cfg.Client.KeepAlive(kaCtx, id); err != nil {
				return fmt.Errorf("federation: keep lease %x alive again: %w", id, err)
			}
			r.cfg.Logger.Warn("federation: keepalives went unanswered but the lease lives; keeping it",
				logLease, fmt.Sprintf("%x", id))
		case <-r.kick:
			dirty = true
		case <-retry:
			retry = nil
			dirty = true
		case <-stable:
			bo.reset()
		case <-heartbeat:
			// Forget that gateway records were written: the next sync
			// writes them again.
			for k := range written {
				if info, err := r.cfg.Keyspace.Parse(k); err == nil && info.Kind == KindGateway {
					delete(written, k)
					dirty = true
				}
			}
		}
	}
}

// leaseAlive asks etcd whether lease id still lives, retrying with bo's
// backoff until etcd answers or ctx ends. Asking is a read on the leader's
// lessor, not a raft proposal.
func (r *Registrar) leaseAlive(ctx context.Context, id clientv3.LeaseID, bo *backoff) (bool, error) {
	for {
		tctx, cancel := context.WithTimeout(ctx, r.cfg.TTL)
		resp, err := r.cfg.Client.TimeToLive(tctx, id)
		cancel()
		switch {
		case err == nil:
			return resp.TTL > 0, nil
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			return false, nil
		case ctx.Err() != nil:
			return false, ctx.Err()
		}
		d := bo.next()
		r.cfg.Logger.Warn("federation: cannot tell whether the lease lives", logLease, fmt.Sprintf("%x", id),
			logError, err, logRetryIn, d)
		if !sleepCtx(ctx.Done(), d) {
			return false, ctx.Err()
		}
	}
}

// sync writes what changed since the last sync of this lease and deletes
// what was withdrawn.
func (r *Registrar) sync(ctx context.Context, id clientv3.LeaseID, written map[string][]byte) error {
	r.mu.Lock()
	var puts []clientv3.Op
	var putKeys []string
	var putVals [][]byte
	for k, v := range r.desired {
		if w, ok := written[k]; !ok || string(w) != string(v) {
			puts = append(puts, clientv3.OpPut(k, string(v), clientv3.WithLease(id)))
			putKeys = append(putKeys, k)
			putVals = append(putVals, v)
		}
	}
	var dels []clientv3.Op
	var delKeys []string
	for k := range r.deletes {
		dels = append(dels, clientv3.OpDelete(k))
		delKeys = append(delKeys, k)
	}
	r.mu.Unlock()

	for i := 0; i < len(puts); i += maxTxnOps {
		j := min(i+maxTxnOps, len(puts))
		if _, err := r.cfg.Client.Txn(ctx).Then(puts[i:j]...).Commit(); err != nil {
			return fmt.Errorf("federation: put %d records: %w", j-i, err)
		}
		for n := i; n < j; n++ {
			written[putKeys[n]] = putVals[n]
		}
	}
	for i := 0; i < len(dels); i += maxTxnOps {
		j := min(i+maxTxnOps, len(dels))
		if _, err := r.cfg.Client.Txn(ctx).Then(dels[i:j]...).Commit(); err != nil {
			return fmt.Errorf("federation: delete %d records: %w", j-i, err)
		}
		r.mu.Lock()
		for _, k := range delKeys[i:j] {
			delete(written, k)
			if _, again := r.desired[k]; !again {
				delete(r.deletes, k)
			}
		}
		r.mu.Unlock()
	}
	return nil
}

// revoke withdraws every record of the lease, bounded by RevokeTimeout.
func (r *Registrar) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.RevokeTimeout)
	defer cancel()
	if _, err := r.cfg.Client.Revoke(ctx, id); err != nil {
		r.cfg.Logger.Warn("federation: revoke lease; records expire with its TTL",
			logLease, fmt.Sprintf("%x", id), logError, err)
	}
}
