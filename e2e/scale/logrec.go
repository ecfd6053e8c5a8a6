package scale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// logLine is one line a real cluster logged, with its attributes as the
// component passed them (an error stays an error).
type logLine struct {
	at    time.Time
	level slog.Level
	msg   string
	attrs []slog.Attr
}

// attr returns the value of the attribute key, and whether the line has
// it.
func (l logLine) attr(key string) (slog.Value, bool) {
	for _, a := range slices.Backward(l.attrs) {
		if a.Key == key {
			return a.Value.Resolve(), true
		}
	}
	return slog.Value{}, false
}

// str returns the attribute key as a string ("" if absent).
func (l logLine) str(key string) string {
	if v, ok := l.attr(key); ok {
		return v.String()
	}
	return ""
}

// logBook keeps the real clusters' lines of the run, DEBUG and up, for
// the reasons of failed connections (WARN and up also go to Config.Logf).
type logBook struct {
	mu    sync.Mutex
	lines []logLine
	quiet int // lines below WARN kept
}

// between returns the lines logged in [from, to].
func (b *logBook) between(from, to time.Time) []logLine {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []logLine
	for _, l := range b.lines {
		if !l.at.Before(from) && !l.at.After(to) {
			out = append(out, l)
		}
	}
	return out
}

// maxLogLines bounds the book: a real cluster that logs more than this
// many lines in a run has failed in a way its first lines tell. Lines
// below WARN fill at most half of it, so that they never crowd out the
// warnings.
const maxLogLines = 200_000

func (b *logBook) add(l logLine) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l.level < slog.LevelWarn {
		if b.quiet >= maxLogLines/2 {
			return
		}
		b.quiet++
	}
	if len(b.lines) < maxLogLines {
		b.lines = append(b.lines, l)
	}
}

// bookHandler is a slog.Handler that keeps every record in book and
// writes those of WARN and up through next. The real components log a
// few DEBUG lines per connection (the proxy's "connection closed" with its
// bytes and errors), which tell what became of a connection that failed
// without a warning.
type bookHandler struct {
	next  slog.Handler
	book  *logBook
	attrs []slog.Attr
	group string
}

func newBookHandler(w io.Writer, book *logBook) *bookHandler {
	return &bookHandler{next: slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}), book: book}
}

func (h *bookHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelDebug }

func (h *bookHandler) Handle(ctx context.Context, r slog.Record) error {
	l := logLine{at: r.Time, level: r.Level, msg: r.Message, attrs: slices.Clone(h.attrs)}
	r.Attrs(func(a slog.Attr) bool {
		l.attrs = append(l.attrs, h.prefixed(a))
		return true
	})
	h.book.add(l)
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *bookHandler) prefixed(a slog.Attr) slog.Attr {
	if h.group != "" {
		a.Key = h.group + "." + a.Key
	}
	return a
}

func (h *bookHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(as)
	c.attrs = slices.Clone(h.attrs)
	for _, a := range as {
		c.attrs = append(c.attrs, h.prefixed(a))
	}
	return &c
}

func (h *bookHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	if c.group != "" {
		name = c.group + "." + name
	}
	c.group = name
	return &c
}

// addrNames names the real clusters' listening addresses in log lines
// and errors ("127.0.0.1:34149" → "real-a egress").
type addrNames map[string]string

func (n addrNames) replace(s string) string {
	for addr, name := range n {
		s = strings.ReplaceAll(s, addr, name)
	}
	return s
}

// errClass says what kind of failure err is, in a few words, from its
// type and not its text: "timeout", "reset by peer", "refused", "EOF", or
// its text with known addresses named.
func errClass(err error, names addrNames) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset by peer"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	}
	return names.replace(err.Error())
}

// who names the component that logged a line: "real-a proxy".
func (l logLine) who() string {
	w := l.str("cluster")
	if c := l.str("component"); c != "" {
		w += " " + c
	}
	return w
}

// reason renders a line as its component, message, reason or code, and
// the class of its error: `real-a proxy "no candidate reachable" (err:
// timeout)`; long adds the error's text, the bytes sent and the
// duration.
func (l logLine) reason(names addrNames, long bool) string {
	var parts []string
	for _, k := range []string{"direction", "reason", "code", "bytes_out", "bytes_in", "duration"} {
		if !long && (k == "bytes_out" || k == "duration") {
			continue
		}
		if v := l.str(k); v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	for _, k := range []string{"err", "up_err", "down_err"} {
		v, ok := l.attr(k)
		if !ok || (v.Kind() == slog.KindAny && v.Any() == nil) {
			continue
		}
		switch e := v.Any().(type) {
		case error:
			c, text := errClass(e, names), names.replace(e.Error())
			if long && c != text {
				c += ": " + text
			}
			parts = append(parts, k+": "+c)
		default:
			if s := v.String(); s != "" {
				parts = append(parts, k+": "+names.replace(s))
			}
		}
	}
	s := fmt.Sprintf("%s %q", l.who(), l.msg)
	if l.level < slog.LevelWarn {
		s = fmt.Sprintf("%s %s %q", l.who(), l.level, l.msg)
	}
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}
