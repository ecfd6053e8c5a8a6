package check

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// progressInterval is how long the check waits before reading a lagging
// member's status again.
const progressInterval = 500 * time.Millisecond

// The revision alone does not show that etcd makes progress: in a quiet
// federation nothing writes (lease keepalives are served by the leader
// without a raft entry), so an unmoving revision is normal. What must
// move is each member's applied index up to the commit index the cluster
// had reached: a member whose applied index stays below it is not
// applying (a full disk, a stuck backend) or not receiving entries (cut
// off from the leader), and serves stale reads.

// progress judges one member: commit is the highest raft index any member
// reported in the first reading, first is this member's first status and
// second its status progressInterval later (nil when first already
// applied commit, so that a healthy cluster costs no wait).
func progress(commit uint64, first, second *pb.StatusResponse) (Status, string, string) {
	if first.GetRaftAppliedIndex() >= commit {
		return OK, fmt.Sprintf("applied index %d, the cluster's commit index", first.GetRaftAppliedIndex()), ""
	}
	if second == nil {
		return Warn, fmt.Sprintf("applied index %d behind commit index %d; not read again", first.GetRaftAppliedIndex(), commit),
			"run the check again"
	}
	behind := commit - first.GetRaftAppliedIndex()
	switch after := second.GetRaftAppliedIndex(); {
	case after >= commit:
		return OK, fmt.Sprintf("applied index %d, caught up with commit index %d within %s", after, commit, progressInterval), ""
	case after > first.GetRaftAppliedIndex():
		return Warn, fmt.Sprintf("applied index %d moving but %d entries behind commit index %d after %s", after, commit-after, commit, progressInterval),
			"the member is slow to apply: check its disk latency (etcd_disk_backend_commit_duration_seconds) and load"
	default:
		return Warn, fmt.Sprintf("applied index stuck at %d for %s, %d entries behind commit index %d", after, progressInterval, behind, commit),
			"the member neither applies nor receives entries: check its disk (space, latency), its logs and its peer network to the leader"
	}
}

// serverCertTimeout bounds the TLS handshake that reads an etcd server's
// certificate.
const serverCertTimeout = 3 * time.Second

// serverCert reads the certificate an etcd endpoint reached over TLS
// (https:// or unixs://) presents and judges its expiry. The chain was
// verified by the etcd client against --etcd-ca when it reached the
// endpoint; this handshake only reads the leaf. ok is false for an
// endpoint without TLS.
func serverCert(ctx context.Context, endpoint string, now time.Time, warn time.Duration) (res Result, ok bool) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "unixs") {
		return Result{}, false
	}
	network, addr := "tcp", u.Host
	if u.Scheme == "unixs" {
		network, addr = "unix", u.Host+u.Path
	}
	res.Check = "server certificate " + endpoint
	ctx, cancel := context.WithTimeout(ctx, serverCertTimeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: &tls.Config{
		// Only the leaf's validity is read here; see above.
		InsecureSkipVerify: true, //nolint:gosec
		ServerName:         u.Hostname(),
	}}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		res.Status, res.Message = Fail, fmt.Sprintf("TLS handshake: %v", err)
		res.Hint = "the endpoint answered etcd's status over TLS but not this handshake: check it again"
		return res, true
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		res.Status, res.Message = Fail, "the server presented no certificate"
		return res, true
	}
	res.Status, res.Message, res.Hint = expiry(certs[0].NotAfter, now, warn, "renew the etcd server certificate (and restart or reload the member)")
	res.Message = fmt.Sprintf("%s: %s", certs[0].Subject, res.Message)
	return res, true
}
