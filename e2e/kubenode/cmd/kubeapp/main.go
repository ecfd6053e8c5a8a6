// Command kubeapp is the small application the e2e Kubernetes tests run in
// pods (Debian's busybox wget crashes there, and images hold no shell).
//
//	kubeapp serve -listen :8080 -text "hello"   # GET / answers "<text> from <hostname>"
//	kubeapp check -lookup web.default.svc.cluster.local -get http://web/ -timeout 30s
//	kubeapp write -file /data/hello -text hello    # writes, reads back, prints "wrote <file>: <text>"
//	kubeapp serve -listen :8080 -udp :9000         # also echoes UDP datagrams, prefixed with the hostname
//	kubeapp check -udp 10.0.0.1:9000               # sends a datagram, prints "udp <addr>: <reply>"
//	kubeapp load -target 127.0.0.1:18080 -rate 50  # e2e/load's generator until stdin ends; JSON records out
//	kubeapp probe -addr 10.96.0.123:8080           # one request; prints "probe <addr>: ok|reset|refused|eof|timeout after <d>: ..."
//
// check resolves the name through the pod's /etc/resolv.conf (Go's own
// resolver, so search domains and ndots apply as for any client), then
// fetches the URL, retrying both every 100 ms until they succeed or the
// timeout passes; it prints "lookup <name>: <addresses>" and "get <url>:
// <status> <body>" and exits 1 on failure.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kubeapp serve|check|write|load|probe [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "check":
		err = check(os.Args[2:])
	case "write":
		err = write(os.Args[2:])
	case "load":
		err = loadCmd(os.Args[2:])
	case "probe":
		err = probe(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeapp:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", ":8080", "address to listen on")
	text := fs.String("text", "hello", "first words of the answer")
	udp := fs.String("udp", "", "UDP address to echo datagrams on (none by default)")
	_ = fs.Parse(args)
	host, _ := os.Hostname()
	if *udp != "" {
		pc, err := net.ListenPacket("udp", *udp)
		if err != nil {
			return err
		}
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo([]byte(host+" "+string(buf[:n])), from)
			}
		}()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%s from %s\n", *text, host)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

func write(args []string) error {
	fs := flag.NewFlagSet("write", flag.ExitOnError)
	file := fs.String("file", "", "file to write")
	text := fs.String("text", "hello", "content")
	_ = fs.Parse(args)
	if err := os.WriteFile(*file, []byte(*text), 0o644); err != nil {
		return err
	}
	b, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s: %s\n", *file, b)
	return nil
}

func check(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	lookup := fs.String("lookup", "", "name to resolve")
	get := fs.String("get", "", "URL to fetch")
	udp := fs.String("udp", "", "UDP address to send a datagram to, expecting an echo")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	_ = fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resolver := &net.Resolver{PreferGo: true}
	if *lookup != "" {
		addrs, attempts, err := retry(ctx, func(ctx context.Context) ([]string, error) {
			return resolver.LookupHost(ctx, *lookup)
		})
		if err != nil {
			return fmt.Errorf("lookup %s (%d attempts): %w", *lookup, attempts, err)
		}
		fmt.Printf("lookup %s: %s (attempts %d)\n", *lookup, strings.Join(addrs, ","), attempts)
	}
	if *get != "" {
		client := &http.Client{
			Timeout:   2 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true, DialContext: (&net.Dialer{Resolver: resolver}).DialContext},
		}
		body, attempts, err := retry(ctx, func(ctx context.Context) ([]string, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, *get, nil)
			if err != nil {
				return nil, err
			}
			resp, err := client.Do(req)
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if err != nil {
				return nil, err
			}
			if resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("status %s", resp.Status)
			}
			return []string{strings.TrimSpace(string(b))}, nil
		})
		if err != nil {
			return fmt.Errorf("get %s (%d attempts): %w", *get, attempts, err)
		}
		fmt.Printf("get %s: 200 %s (attempts %d)\n", *get, body[0], attempts)
	}
	if *udp != "" {
		reply, attempts, err := retry(ctx, func(ctx context.Context) ([]string, error) {
			c, err := net.Dial("udp", *udp)
			if err != nil {
				return nil, err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
			if _, err := c.Write([]byte("ping")); err != nil {
				return nil, err
			}
			buf := make([]byte, 2048)
			n, err := c.Read(buf)
			if err != nil {
				return nil, err
			}
			return []string{string(buf[:n])}, nil
		})
		if err != nil {
			return fmt.Errorf("udp %s (%d attempts): %w", *udp, attempts, err)
		}
		fmt.Printf("udp %s: %s (attempts %d)\n", *udp, reply[0], attempts)
	}
	return nil
}

// retry calls fn every 100 ms until it succeeds or ctx ends.
func retry(ctx context.Context, fn func(context.Context) ([]string, error)) ([]string, int, error) {
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	var last error
	for attempts := 1; ; attempts++ {
		out, err := fn(ctx)
		if err == nil {
			return out, attempts, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, attempts, errors.Join(ctx.Err(), last)
		case <-ticker.C:
		}
	}
}
