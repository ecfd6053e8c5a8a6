package etcdtest

import (
	"context"
	"testing"
	"time"
)

func TestStartServes(t *testing.T) {
	for _, n := range []int{1, 3} {
		_, cli := Start(t, n)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := cli.Put(ctx, "/k", "v"); err != nil {
			t.Fatalf("%d members: put: %v", n, err)
		}
		resp, err := cli.Get(ctx, "/k")
		cancel()
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
			t.Fatalf("%d members: get = %v, %v", n, resp, err)
		}
	}
}
