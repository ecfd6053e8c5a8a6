package kube

import (
	"context"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// runElected campaigns for the Lease and runs the controller while it
// leads; after losing the lease it stops reconciling and campaigns again.
func (c *Controller) runElected(ctx context.Context) error {
	le := c.cfg.LeaderElection
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name},
		Client:     c.cfg.Kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: le.Identity},
	}
	// The elector calls OnStartedLeading in its own goroutine and may
	// return before that goroutine ends (or even starts): the result of a
	// run travels through done, and run itself never overlaps another (see
	// Controller.runMu).
	var mu sync.Mutex
	var done chan error
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   le.LeaseDuration,
		RenewDeadline:   le.RenewDeadline,
		RetryPeriod:     le.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            le.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				c.log.Info("leading", logName, le.Name)
				ch := make(chan error, 1)
				mu.Lock()
				done = ch
				mu.Unlock()
				ch <- c.run(lctx)
			},
			OnStoppedLeading: func() { c.log.Info("not leading", logName, le.Name) },
		},
	})
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		elector.Run(ctx) // returns when the lease is lost or ctx ends
		mu.Lock()
		ch := done
		done = nil
		mu.Unlock()
		if ch == nil {
			continue
		}
		if err := <-ch; err != nil && ctx.Err() == nil && !isCanceled(err) {
			return err
		}
	}
	return ctx.Err()
}
