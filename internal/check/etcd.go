package check

import (
	"context"
	"fmt"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strait-mesh/strait/federation"
)

const etcdCallTimeout = 5 * time.Second

// etcd checks every endpoint's status, the client certificate and that
// the keyspace reads; it returns the snapshot read.
func (r *runner) etcd(ctx context.Context, rep *Report) (*federation.Snapshot, bool) {
	add := func(res Result) { res.Category = CategoryEtcd; rep.Results = append(rep.Results, res) }
	reachable := 0
	statuses := map[string]*pb.StatusResponse{}
	for _, ep := range r.cfg.Etcd.Endpoints() {
		sctx, cancel := context.WithTimeout(ctx, etcdCallTimeout)
		st, err := r.cfg.Etcd.Status(sctx, ep)
		cancel()
		switch {
		case err != nil:
			add(Result{Check: ep, Status: Fail, Message: fmt.Sprintf("unreachable: %v", err),
				Hint: "check --etcd, the network path to etcd and its TLS flags (--etcd-ca, --etcd-cert, --etcd-key)"})
		case st.Leader == 0:
			reachable++
			add(Result{Check: ep, Status: Fail, Message: "member has no leader",
				Hint: "etcd lost quorum: check the other members and their peer network"})
		default:
			reachable++
			statuses[ep] = (*pb.StatusResponse)(st)
			add(Result{Check: ep, Status: OK, Message: fmt.Sprintf("etcd %s, leader %x, revision %d, raft term %d",
				st.Version, st.Leader, st.Header.GetRevision(), st.RaftTerm)})
		}
	}
	r.progress(ctx, statuses, add)
	for _, ep := range r.cfg.Etcd.Endpoints() {
		if statuses[ep] == nil {
			continue
		}
		if res, ok := serverCert(ctx, ep, r.cfg.Now(), r.cfg.ExpiryWarning); ok {
			add(res)
		}
	}
	if r.cfg.EtcdCertFile != "" {
		add(r.clientCert())
	}
	if reachable == 0 {
		return nil, false
	}
	lctx, cancel := context.WithTimeout(ctx, etcdCallTimeout)
	defer cancel()
	snap, invalid, err := federation.ListSnapshot(lctx, r.cfg.Etcd, r.cfg.Keyspace)
	if err != nil {
		add(Result{Check: "keyspace " + r.cfg.Keyspace.Root(), Status: Fail, Message: fmt.Sprintf("cannot read: %v", err),
			Hint: "the client's etcd user needs read access to the prefix"})
		return nil, false
	}
	res := Result{Check: "keyspace " + r.cfg.Keyspace.Root(), Status: OK,
		Message: fmt.Sprintf("readable at revision %d: %d clusters, %d services", snap.Revision(), len(snap.Clusters()), len(snap.Services()))}
	if len(invalid) > 0 {
		var msgs []string
		for i, e := range invalid {
			if i == 3 {
				msgs = append(msgs, fmt.Sprintf("and %d more", len(invalid)-3))
				break
			}
			msgs = append(msgs, e.Error())
		}
		res.Status = Warn
		res.Message += fmt.Sprintf("; %d invalid records skipped: %s", len(invalid), strings.Join(msgs, "; "))
		res.Hint = "fix or delete the records (etcdctl); gateways skip them too"
	}
	add(res)
	return snap, true
}

// progress checks that every member with a leader applies the entries
// the cluster committed (see progressInterval); it reads again, once,
// only the members behind.
func (r *runner) progress(ctx context.Context, statuses map[string]*pb.StatusResponse, add func(Result)) {
	var commit uint64
	for _, st := range statuses {
		commit = max(commit, st.GetRaftIndex())
	}
	second := map[string]*pb.StatusResponse{}
	for ep, st := range statuses {
		if st.GetRaftAppliedIndex() < commit {
			second[ep] = nil
		}
	}
	if len(second) > 0 {
		t := time.NewTimer(progressInterval)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
			for ep := range second {
				sctx, cancel := context.WithTimeout(ctx, etcdCallTimeout)
				if st, err := r.cfg.Etcd.Status(sctx, ep); err == nil {
					second[ep] = (*pb.StatusResponse)(st)
				}
				cancel()
			}
		}
	}
	for _, ep := range r.cfg.Etcd.Endpoints() {
		st := statuses[ep]
		if st == nil {
			continue
		}
		status, msg, hint := progress(commit, st, second[ep])
		add(Result{Check: "progress " + ep, Status: status, Message: msg, Hint: hint})
	}
}

// clientCert checks the etcd client certificate's validity.
func (r *runner) clientCert() Result {
	res := Result{Check: "client certificate " + r.cfg.EtcdCertFile}
	pair, err := loadCertOnly(r.cfg.EtcdCertFile)
	if err != nil {
		res.Status, res.Message = Fail, err.Error()
		return res
	}
	res.Status, res.Message, res.Hint = expiry(pair.Leaf.NotAfter, r.cfg.Now(), r.cfg.ExpiryWarning, "renew the etcd client certificate")
	return res
}

// expiry judges a NotAfter.
func expiry(notAfter, now time.Time, warn time.Duration, hint string) (Status, string, string) {
	left := notAfter.Sub(now)
	switch {
	case left <= 0:
		return Fail, fmt.Sprintf("expired at %s", notAfter.Format(time.RFC3339)), hint
	case left < warn:
		return Warn, fmt.Sprintf("expires in %s (%s)", left.Round(time.Minute), notAfter.Format(time.RFC3339)), hint
	default:
		return OK, fmt.Sprintf("valid until %s", notAfter.Format(time.RFC3339)), ""
	}
}
