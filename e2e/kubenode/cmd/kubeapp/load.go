package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/strait-mesh/strait/e2e/load"
)

// loadCmd runs an e2e/load Generator against -target from inside the pod
// and writes each request's record as one JSON object per line as it
// completes (checked every 100 ms), until its standard input ends or
// carries a line "stop" (kubectl exec -i: the test writes it) or -max
// passes; requests in flight then complete and are written too.
func loadCmd(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	target := fs.String("target", "127.0.0.1:18080", "host:port to send requests to")
	rate := fs.Float64("rate", 50, "new connections (one request each) per second")
	timeout := fs.Duration("timeout", 2*time.Second, "bound of each request")
	maxRun := fs.Duration("max", 10*time.Minute, "stop after this long even when stdin stays open")
	_ = fs.Parse(args)
	gen, err := load.NewGenerator(load.Config{Target: *target, Rate: *rate, Timeout: *timeout})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *maxRun)
	defer cancel()
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() && strings.TrimSpace(sc.Text()) != "stop" {
		}
		cancel()
	}()
	done := make(chan error, 1)
	go func() { done <- gen.Run(ctx) }()
	fmt.Fprintln(os.Stderr, "load: started")
	enc := json.NewEncoder(os.Stdout)
	written := map[int64]bool{}
	flush := func() error {
		for _, r := range gen.History() {
			if !written[r.Seq] {
				written[r.Seq] = true
				if err := enc.Encode(r); err != nil {
					return err
				}
			}
		}
		return nil
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if ferr := flush(); ferr != nil {
				return ferr
			}
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return nil
		case <-tick.C:
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// probe sends one HTTP request on a new connection to -addr and prints how
// it ended and how long that took: "probe <addr>: ok|reset|refused|eof|
// timeout after <duration>: <detail>". It never retries; it exits 0 whatever
// the outcome, which the caller reads.
func probe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	addr := fs.String("addr", "", "host:port")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long (outcome timeout)")
	_ = fs.Parse(args)
	start := time.Now()
	kind, detail := probeOnce(*addr, *timeout)
	fmt.Printf("probe %s: %s after %s: %s\n", *addr, kind, time.Since(start).Round(time.Millisecond), detail)
	return nil
}

func probeOnce(addr string, timeout time.Duration) (kind, detail string) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return errKind(err), err.Error()
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"); err != nil {
		return errKind(err), err.Error()
	}
	b, err := io.ReadAll(io.LimitReader(conn, 4096))
	switch {
	case err != nil:
		return errKind(err), err.Error()
	case len(b) == 0:
		return "eof", "closed without a byte"
	}
	return "ok", fmt.Sprintf("%q", b)
}

func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF):
		return "eof"
	}
	return "other"
}
