package wan

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Main runs a link configured by command-line flags until SIGINT or SIGTERM;
// SIGUSR1 partitions it and SIGUSR2 heals it. It is the body of
// cmd/strait-wan and of the e2e re-exec helper, and returns the exit code.
//
//	-listen 10.77.0.128:8443 -backend 10.77.2.10:8443 -backend ... \
//	-delay 15ms -jitter 1ms -loss 0.01 -refuse -control 10.77.0.1:9901 \
//	-source 10.77.1.0/24=5ms,0s,0   # clients in 10.77.1.0/24: delay,jitter,loss
func Main(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("strait-wan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg LinkConfig
	var backends, sources multiFlag
	var control string
	var refuse bool
	fs.StringVar(&cfg.Name, "name", "", "link name for logs (default: the listen address)")
	fs.StringVar(&cfg.Listen, "listen", "", "host:port to accept TCP and UDP on (required)")
	fs.Var(&backends, "backend", "backend host:port (repeat for several)")
	fs.DurationVar(&cfg.Delay, "delay", 0, "one-way delay, both directions")
	fs.DurationVar(&cfg.Jitter, "jitter", 0, "jitter, both directions")
	fs.Float64Var(&cfg.Loss, "loss", 0, "UDP loss probability, both directions")
	fs.BoolVar(&refuse, "refuse", false, "partitions reset TCP connections instead of blackholing them")
	fs.BoolVar(&cfg.DisableTCP, "no-tcp", false, "do not relay TCP")
	fs.BoolVar(&cfg.DisableUDP, "no-udp", false, "do not relay UDP")
	fs.DurationVar(&cfg.UDPIdleTimeout, "udp-idle", 0, "UDP flow idle timeout (default 60s)")
	fs.StringVar(&control, "control", "", "host:port of the HTTP control endpoint (optional)")
	fs.Var(&sources, "source", "PREFIX=DELAY[,JITTER[,LOSS]]: shaping of the clients in PREFIX, both directions (repeat for several)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg.Backends = backends
	for _, src := range sources {
		ss, err := parseSource(src)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		cfg.Sources = append(cfg.Sources, ss)
	}
	if refuse {
		cfg.PartitionMode = Refuse
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cfg.Logger = log
	if err := run(cfg, control, log); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

func run(cfg LinkConfig, control string, log *slog.Logger) error {
	link, err := NewLink(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sigs:
				if s == syscall.SIGUSR1 {
					link.Partition()
				} else {
					link.Heal()
				}
			}
		}
	}()
	if control != "" {
		ln, err := net.Listen("tcp", control)
		if err != nil {
			link.Close()
			return fmt.Errorf("wan: control listen: %w", err)
		}
		srv := &http.Server{Handler: link.ControlHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		log.Info("wan control endpoint", "addr", ln.Addr().String())
	}
	if err := link.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// parseSource parses PREFIX=DELAY[,JITTER[,LOSS]].
func parseSource(v string) (SourceShape, error) {
	prefix, rest, ok := strings.Cut(v, "=")
	if !ok {
		return SourceShape{}, fmt.Errorf("wan: -source %q: want PREFIX=DELAY[,JITTER[,LOSS]]", v)
	}
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return SourceShape{}, fmt.Errorf("wan: -source %q: %w", v, err)
	}
	var s Shape
	parts := strings.Split(rest, ",")
	if s.Delay, err = time.ParseDuration(parts[0]); err != nil {
		return SourceShape{}, fmt.Errorf("wan: -source %q: %w", v, err)
	}
	if len(parts) > 1 {
		if s.Jitter, err = time.ParseDuration(parts[1]); err != nil {
			return SourceShape{}, fmt.Errorf("wan: -source %q: %w", v, err)
		}
	}
	if len(parts) > 2 {
		if s.Loss, err = strconv.ParseFloat(parts[2], 64); err != nil {
			return SourceShape{}, fmt.Errorf("wan: -source %q: %w", v, err)
		}
	}
	return SourceShape{From: p, Forward: s, Reverse: s}, nil
}

type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error {
	*m = append(*m, s)
	return nil
}
