package wan

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// ShapeRequest is the body of POST /shape. Durations use time.ParseDuration
// syntax ("15ms"); empty fields keep their current value. With From, it sets
// the shaping of the clients in that prefix (see SourceShape).
type ShapeRequest struct {
	From      string   `json:"from,omitempty"`      // a prefix such as "10.77.1.0/24"
	Direction string   `json:"direction,omitempty"` // both (default), forward, reverse
	Delay     string   `json:"delay,omitempty"`
	Jitter    string   `json:"jitter,omitempty"`
	Loss      *float64 `json:"loss,omitempty"`
}

// ControlHandler serves the link's HTTP control API:
//
//	POST /partition[?from=PREFIX]   cut the link (for clients in PREFIX only)
//	POST /heal[?from=PREFIX]        heal it (every partition without from)
//	POST /shape                     change the shaping (body: ShapeRequest)
//	GET  /stats                     Stats as JSON
func (l *Link) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /partition", func(w http.ResponseWriter, r *http.Request) {
		from, ok := fromParam(w, r)
		if !ok {
			return
		}
		if from.IsValid() {
			l.PartitionFrom(from)
		} else {
			l.Partition()
		}
		writeJSON(w, l.Stats())
	})
	mux.HandleFunc("POST /heal", func(w http.ResponseWriter, r *http.Request) {
		from, ok := fromParam(w, r)
		if !ok {
			return
		}
		if from.IsValid() {
			l.HealFrom(from)
		} else {
			l.Heal()
		}
		writeJSON(w, l.Stats())
	})
	mux.HandleFunc("POST /shape", func(w http.ResponseWriter, r *http.Request) {
		var req ShapeRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
			http.Error(w, "wan: bad shape request: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := l.applyShapeRequest(req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, l.Stats())
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, l.Stats())
	})
	return mux
}

func fromParam(w http.ResponseWriter, r *http.Request) (netip.Prefix, bool) {
	v := r.URL.Query().Get("from")
	if v == "" {
		return netip.Prefix{}, true
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		http.Error(w, "wan: from: "+err.Error(), http.StatusBadRequest)
		return netip.Prefix{}, false
	}
	return p, true
}

func (l *Link) applyShapeRequest(req ShapeRequest) error {
	dir, err := ParseDirection(req.Direction)
	if err != nil {
		return err
	}
	var from netip.Prefix
	if req.From != "" {
		if from, err = netip.ParsePrefix(req.From); err != nil {
			return fmt.Errorf("wan: from: %w", err)
		}
	}
	// Start from what applies now to that prefix (or the default).
	ss := SourceShape{From: from, Forward: l.Shape(Forward), Reverse: l.Shape(Reverse)}
	if from.IsValid() {
		ss.Forward, ss.Reverse = l.ShapeFor(Forward, from.Addr()), l.ShapeFor(Reverse, from.Addr())
	}
	for _, d := range []Direction{Forward, Reverse} {
		if dir != Both && dir != d {
			continue
		}
		s := &ss.Forward
		if d == Reverse {
			s = &ss.Reverse
		}
		if req.Delay != "" {
			if s.Delay, err = time.ParseDuration(req.Delay); err != nil {
				return fmt.Errorf("wan: delay: %w", err)
			}
		}
		if req.Jitter != "" {
			if s.Jitter, err = time.ParseDuration(req.Jitter); err != nil {
				return fmt.Errorf("wan: jitter: %w", err)
			}
		}
		if req.Loss != nil {
			s.Loss = *req.Loss
		}
	}
	if from.IsValid() {
		return l.SetSourceShape(ss)
	}
	if err := ss.Forward.validate("forward"); err != nil {
		return err
	}
	if err := ss.Reverse.validate("reverse"); err != nil {
		return err
	}
	if err := l.SetShape(Forward, ss.Forward); err != nil {
		return err
	}
	return l.SetShape(Reverse, ss.Reverse)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Control drives a link served by ControlHandler in another process.
type Control struct {
	// URL is the control endpoint's base, e.g. "http://10.77.0.1:9901".
	URL string
	// Client sends the requests; its transport may dial from inside a network
	// namespace. Default: a client with a 5 s timeout.
	Client *http.Client
}

// Partition cuts the link.
func (c Control) Partition(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/partition", nil, nil)
}

// Heal heals the link.
func (c Control) Heal(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/heal", nil, nil)
}

// PartitionFrom cuts the link for the clients in from.
func (c Control) PartitionFrom(ctx context.Context, from netip.Prefix) error {
	return c.do(ctx, http.MethodPost, "/partition?from="+url.QueryEscape(from.String()), nil, nil)
}

// HealFrom heals the partition of the clients in from.
func (c Control) HealFrom(ctx context.Context, from netip.Prefix) error {
	return c.do(ctx, http.MethodPost, "/heal?from="+url.QueryEscape(from.String()), nil, nil)
}

// SetShape changes the default shaping of dir.
func (c Control) SetShape(ctx context.Context, dir Direction, s Shape) error {
	loss := s.Loss
	req := ShapeRequest{Direction: dir.String(), Delay: s.Delay.String(), Jitter: s.Jitter.String(), Loss: &loss}
	return c.do(ctx, http.MethodPost, "/shape", req, nil)
}

// SetSourceShape sets the shaping of the clients in ss.From.
func (c Control) SetSourceShape(ctx context.Context, ss SourceShape) error {
	for _, d := range []Direction{Forward, Reverse} {
		s := ss.Forward
		if d == Reverse {
			s = ss.Reverse
		}
		loss := s.Loss
		req := ShapeRequest{From: ss.From.String(), Direction: d.String(), Delay: s.Delay.String(), Jitter: s.Jitter.String(), Loss: &loss}
		if err := c.do(ctx, http.MethodPost, "/shape", req, nil); err != nil {
			return err
		}
	}
	return nil
}

// Stats fetches the link's counters.
func (c Control) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := c.do(ctx, http.MethodGet, "/stats", nil, &st)
	return st, err
}

func (c Control) do(ctx context.Context, method, path string, in, out any) error {
	client := c.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("wan: control %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, body)
	if err != nil {
		return fmt.Errorf("wan: control %s: %w", path, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("wan: control %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("wan: control %s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("wan: control %s: %w", path, err)
		}
	}
	return nil
}
