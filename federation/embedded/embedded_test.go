package embedded

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestStopMemberLeaderForcesElection: StopMember on the leader of a
// 3-member cluster stops it as a crash would, without handing leadership
// over first (etcd's own graceful stop moves leadership to a follower
// before stopping, and then no election ever happens). The stopped member
// must still believe it is the leader when it stops, the survivors must
// elect a new leader at a higher term, and the cluster must take writes
// again.
func TestStopMemberLeaderForcesElection(t *testing.T) {
	cfg := Config{}
	for i := range 3 {
		cfg.Members = append(cfg.Members, Member{Name: fmt.Sprintf("m%d", i), Dir: t.TempDir()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })

	leader := -1
	deadline := time.Now().Add(30 * time.Second)
	for leader < 0 {
		for i := range 3 {
			if m := srv.Member(i).Server; m.Leader() == m.MemberID() {
				leader = i
			}
		}
		if leader < 0 {
			if time.Now().After(deadline) {
				t.Fatal("no leader after 30s")
			}
			time.Sleep(10 * time.Millisecond) // polling the raft state, with a deadline
		}
	}
	old := srv.Member(leader).Server
	oldID, oldTerm := old.MemberID(), old.Term()

	stopped := time.Now()
	if err := srv.StopMember(leader); err != nil {
		t.Fatalf("StopMember(%d): %v", leader, err)
	}
	t.Logf("leader m%d (term %d) stopped in %s", leader, oldTerm, time.Since(stopped).Round(time.Millisecond))
	if lead := old.Leader(); lead != oldID {
		t.Errorf("the stopped leader last saw leader %s, not itself: it handed leadership over before stopping", lead)
	}

	var eps []string
	for i, ep := range srv.Endpoints() {
		if i != leader {
			eps = append(eps, ep)
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var wrote time.Duration
	for {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Put(wctx, "/strait-test/after-stop", "x")
		cancel()
		if err == nil {
			wrote = time.Since(stopped)
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no write accepted after the leader stopped: %v", err)
		}
	}
	for i := range 3 {
		if i == leader {
			continue
		}
		s := srv.Member(i).Server
		if s.Leader() == oldID || s.Leader() == 0 {
			t.Errorf("m%d follows %s after the write, want a new leader", i, s.Leader())
		}
		if s.Term() <= oldTerm {
			t.Errorf("m%d is at term %d, want above the stopped leader's %d", i, s.Term(), oldTerm)
		}
	}
	t.Logf("write accepted %s after the stop", wrote.Round(time.Millisecond))
}
