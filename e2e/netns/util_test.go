package netns

import (
	"context"
	"io"
	osexec "os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/e2e/wait"
)

func echoOnce(ctx context.Context, from *Host, addr string) error {
	_, err := echoRTT(ctx, from, addr)
	return err
}

// echoRTT opens a connection and returns the fastest of 10 round trips (a
// loaded machine only adds to the emulated delay).
func echoRTT(ctx context.Context, from *Host, addr string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := from.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var rtts []time.Duration
	buf := make([]byte, 4)
	for range 10 {
		start := time.Now()
		if _, err := c.Write([]byte("ping")); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return 0, err
		}
		rtts = append(rtts, time.Since(start))
	}
	return slices.Min(rtts), nil
}

func waitEcho(ctx context.Context, from *Host, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return wait.Until(ctx, 20*time.Millisecond, func(ctx context.Context) (bool, error) {
		return true, wait.Retry(echoOnce(ctx, from, addr))
	})
}

// startStray starts `sleep 600` in h outside the topology's process tracking.
func startStray(t *testing.T, h *Host) *osexec.Cmd {
	t.Helper()
	cmd := osexec.Command("ip", "netns", "exec", h.Namespace(), "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func countNS(t *testing.T, ctx context.Context, prefix string) int {
	t.Helper()
	names, err := listNS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ns := range names {
		if strings.HasPrefix(ns, prefix+"-") {
			n++
		}
	}
	return n
}

func contains(s []string, v string) bool { return slices.Contains(s, v) }
