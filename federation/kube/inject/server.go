package inject

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
)

// ServerConfig configures the webhook's HTTPS server. Zero values mean the
// documented default.
type ServerConfig struct {
	// Addr is the listen address. Zero means ":15017".
	Addr string
	// CertFile and KeyFile are the serving certificate (PEM) whose CA the
	// MutatingWebhookConfiguration's caBundle holds, e.g. a mounted
	// kubernetes.io/tls Secret. Required. They are read again when they
	// change, so a renewed Secret needs no restart.
	CertFile, KeyFile string
	// Injector answers the reviews. Required.
	Injector *Injector
	// Listener, when set, is used instead of listening on Addr (tests).
	Listener net.Listener
}

// Server is the webhook's HTTPS server.
type Server struct {
	cfg   ServerConfig
	certs *certReloader
	ready chan struct{}
	addr  net.Addr
}

// NewServer checks cfg and loads the certificate once, so that a bad one
// fails at start.
func NewServer(cfg ServerConfig) (*Server, error) {
	cfg.Addr = cmp.Or(cfg.Addr, ":15017")
	var errs *multierror.Error
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		errs = multierror.Append(errs, errors.New("a certificate file and a key file are required"))
	}
	if cfg.Injector == nil {
		errs = multierror.Append(errs, errors.New("no injector"))
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, fmt.Errorf("inject: %w", err)
	}
	certs := &certReloader{certFile: cfg.CertFile, keyFile: cfg.KeyFile}
	if _, err := certs.get(); err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, certs: certs, ready: make(chan struct{})}, nil
}

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the address the server listens on, after Ready.
func (s *Server) Addr() net.Addr { return s.addr }

// Run serves until ctx ends, then shuts down and returns ctx.Err().
func (s *Server) Run(ctx context.Context) error {
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("inject: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/inject/", s.cfg.Injector.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.certs.get() },
		},
	}
	s.addr = ln.Addr()
	close(s.ready)
	s.cfg.Injector.cfg.Logger.Info("inject: webhook serving", logAddress, ln.Addr().String())
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	err := srv.ServeTLS(ln, "", "")
	if !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("inject: %w", err)
	}
	<-done
	return ctx.Err()
}

// certReloader loads the key pair again when either file's modification
// time changes.
type certReloader struct {
	certFile, keyFile string

	mu              sync.Mutex
	cert            *tls.Certificate
	certMod, keyMod time.Time
}

func (r *certReloader) get() (*tls.Certificate, error) {
	cs, err1 := os.Stat(r.certFile)
	ks, err2 := os.Stat(r.keyFile)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := errors.Join(err1, err2); err != nil {
		if r.cert != nil {
			return r.cert, nil // a Secret update in progress: keep the last one
		}
		return nil, fmt.Errorf("inject: serving certificate: %w", err)
	}
	if r.cert != nil && cs.ModTime().Equal(r.certMod) && ks.ModTime().Equal(r.keyMod) {
		return r.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		if r.cert != nil {
			return r.cert, nil
		}
		return nil, fmt.Errorf("inject: serving certificate: %w", err)
	}
	r.cert, r.certMod, r.keyMod = &cert, cs.ModTime(), ks.ModTime()
	return r.cert, nil
}
