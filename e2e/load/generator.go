package load

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-multierror"
)

// Defaults of Config.
const (
	DefaultRate        = 200
	DefaultTimeout     = 2 * time.Second
	DefaultMaxInFlight = 2000
	DefaultPath        = "/"
)

// Error kinds of a failed request.
const (
	KindConnectRefused = "connect_refused"
	KindConnectTimeout = "connect_timeout"
	KindUnreachable    = "unreachable"
	KindReset          = "reset"
	KindTimeout        = "timeout"
	KindBadResponse    = "bad_response"
	KindOverload       = "overload" // MaxInFlight requests were pending
	KindOther          = "other"
)

// ErrInvalidConfig is wrapped by every validation error of NewGenerator.
var ErrInvalidConfig = errors.New("load: invalid config")

// Config configures a Generator. Zero values mean the documented default.
type Config struct {
	// Target is the host:port requests go to. Required.
	Target string
	// Path is the request path. Default: "/".
	Path string
	// Rate is how many new connections (one request each) start per second.
	// Default: 200.
	Rate float64
	// Timeout bounds each request, connect included. Default: 2 s.
	Timeout time.Duration
	// Dial opens the connections; pass a netns Host's DialContext to send
	// from inside a namespace. Default: net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ClusterOf names the cluster that answered from a response body.
	// Default: ParseCluster.
	ClusterOf func(body []byte) string
	// MaxInFlight caps pending requests; a request due beyond it is recorded
	// as KindOverload instead of being sent. Default: 2000.
	MaxInFlight int
	// Logger receives the generator's logs. Default: slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = d.DialContext
	}
	if c.ClusterOf == nil {
		c.ClusterOf = ParseCluster
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	var errs *multierror.Error
	if _, _, err := net.SplitHostPort(c.Target); err != nil {
		errs = multierror.Append(errs, fmt.Errorf("%w: target %q: %w", ErrInvalidConfig, c.Target, err))
	}
	if c.Rate < 0 || c.Rate > 100000 {
		errs = multierror.Append(errs, fmt.Errorf("%w: rate %g outside (0, 100000]", ErrInvalidConfig, c.Rate))
	}
	if c.Timeout < 0 {
		errs = multierror.Append(errs, fmt.Errorf("%w: negative timeout", ErrInvalidConfig))
	}
	if c.MaxInFlight < 0 {
		errs = multierror.Append(errs, fmt.Errorf("%w: negative max in flight", ErrInvalidConfig))
	}
	return errs.ErrorOrNil()
}

// Record is the outcome of one request.
type Record struct {
	Seq     int64
	Key     string        // idempotency key
	Start   time.Time     // when the connection was started
	Latency time.Duration // until the response was read or the error
	Kind    string        // "" when ok, else an error kind
	Error   string        // the error text, for failures
	Cluster string        // who answered, for successes
	// Local is the local address of the request's connection, "" when it
	// was never connected: a proxy's log names the connection by it.
	Local string
}

// OK reports whether the request succeeded.
func (r Record) OK() bool { return r.Kind == "" }

// End returns when the request completed.
func (r Record) End() time.Time { return r.Start.Add(r.Latency) }

// Generator sends requests at a fixed rate and records every outcome.
type Generator struct {
	cfg    Config
	log    *slog.Logger
	prefix string

	seq      atomic.Int64
	inFlight atomic.Int64
	ran      atomic.Bool

	mu      sync.Mutex
	records []Record
}

// NewGenerator validates cfg.
func NewGenerator(cfg Config) (*Generator, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("load: key prefix: %w", err)
	}
	return &Generator{cfg: cfg, log: cfg.Logger, prefix: hex.EncodeToString(b)}, nil
}

// Run sends requests until ctx ends, waits for those in flight, and returns
// ctx.Err(). It may be called once.
func (g *Generator) Run(ctx context.Context) error {
	if !g.ran.CompareAndSwap(false, true) {
		return errors.New("load: generator already run")
	}
	interval := time.Duration(float64(time.Second) / g.cfg.Rate)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	deadline, hasDeadline := ctx.Deadline()
	for n := int64(0); ; n++ {
		// Request n is due at start + n*interval; late ones go out at once.
		// None is due at or after ctx's deadline, even when the context's
		// own timer has not fired yet (on a loaded machine it can lag).
		due := start.Add(time.Duration(n) * interval)
		if hasDeadline && !due.Before(deadline) {
			<-ctx.Done()
			return ctx.Err()
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		seq := g.seq.Add(1)
		key := g.prefix + "-" + strconv.FormatInt(seq, 10)
		if g.inFlight.Load() >= int64(g.cfg.MaxInFlight) {
			g.record(Record{Seq: seq, Key: key, Start: time.Now(), Kind: KindOverload, Error: "too many requests in flight"})
			continue
		}
		g.inFlight.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer g.inFlight.Add(-1)
			g.record(g.do(seq, key))
		}()
	}
}

func (g *Generator) record(r Record) {
	g.mu.Lock()
	g.records = append(g.records, r)
	g.mu.Unlock()
}

// do sends one request on a new connection. It does not use the caller's
// context: a request in flight when the run ends still completes.
func (g *Generator) do(seq int64, key string) Record {
	rec := Record{Seq: seq, Key: key, Start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.Timeout)
	defer cancel()
	fail := func(kind string, err error) Record {
		rec.Latency = time.Since(rec.Start)
		rec.Kind, rec.Error = kind, err.Error()
		return rec
	}
	conn, err := g.cfg.Dial(ctx, "tcp", g.cfg.Target)
	if err != nil {
		return fail(classifyDial(err), err)
	}
	defer conn.Close()
	if a := conn.LocalAddr(); a != nil {
		rec.Local = a.String()
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	req := fmt.Sprintf("GET %s?key=%s HTTP/1.1\r\nHost: %s\r\n%s: %s\r\nConnection: close\r\n\r\n",
		g.cfg.Path, key, g.cfg.Target, KeyHeader, key)
	if _, err := io.WriteString(conn, req); err != nil {
		return fail(classify(err), err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return fail(classify(err), err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return fail(classify(err), err)
	}
	if resp.StatusCode != http.StatusOK {
		return fail("status_"+strconv.Itoa(resp.StatusCode), fmt.Errorf("status %s", resp.Status))
	}
	if k := replyKey(body); k != "" && k != key {
		return fail(KindBadResponse, fmt.Errorf("answer for key %q, want %q", k, key))
	}
	rec.Latency = time.Since(rec.Start)
	rec.Cluster = g.cfg.ClusterOf(body)
	return rec
}

func classifyDial(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindConnectRefused
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return KindUnreachable
	case isTimeout(err):
		return KindConnectTimeout
	}
	return classify(err)
}

func classify(err error) string {
	switch {
	case isTimeout(err):
		return KindTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return KindReset
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindConnectRefused
	}
	return KindOther
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var clusterRE = regexp.MustCompile(`cluster[" :=]+([A-Za-z0-9_.-]+)`)

// ParseCluster finds the answering cluster in a response body: the "cluster"
// field of a JSON object (a Server's Reply), or else the word after
// "cluster" (as in "hello from cluster west; ..."). It returns "" when there
// is none.
func ParseCluster(body []byte) string {
	var r Reply
	if json.Unmarshal(body, &r) == nil && r.Cluster != "" {
		return r.Cluster
	}
	if m := clusterRE.FindSubmatch(body); m != nil {
		return string(m[1])
	}
	return ""
}

func replyKey(body []byte) string {
	var r Reply
	if json.Unmarshal(body, &r) == nil {
		return r.Key
	}
	return ""
}

// History returns every outcome recorded so far, in start order.
func (g *Generator) History() History {
	g.mu.Lock()
	h := append(History(nil), g.records...)
	g.mu.Unlock()
	sort.Slice(h, func(i, j int) bool { return h[i].Seq < h[j].Seq })
	return h
}
