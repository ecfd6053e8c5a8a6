// Package wait polls for a condition with a deadline, so that end-to-end tests
// wait for state instead of sleeping for a guessed time.
//
//	err := wait.Until(ctx, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
//		return link.Stats().TCPActive == 0, nil
//	})
//
//	wait.For(t, 5*time.Second, "etcd leader", func() bool { return leader() != "" })
package wait
