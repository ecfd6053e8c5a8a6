package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"
)

const (
	// alpn names the relay's protocol.
	alpn = "rawquic"
	// udpBufferSize is the gateway's UDP socket buffer size.
	udpBufferSize = 7 << 20
	// bufferSize is the copy buffer size (gateway/relay.DefaultBufferSize).
	bufferSize = 32 << 10
	// resetCode aborts a stream whose TCP side failed.
	resetCode = 1
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rawquic server|client|tcp -listen addr -to addr")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "server: UDP address for QUIC; client and tcp: TCP address for the app")
	to := fs.String("to", "", "server and tcp: TCP target; client: the server's UDP address")
	conns := fs.Int("conns", 1, "client: QUIC connections to spread streams over, round robin (Strait's gateway uses one per peer)")
	_ = fs.Parse(os.Args[2:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "server":
		err = runServer(ctx, *listen, *to, log)
	case "client":
		err = runClient(ctx, *listen, *to, max(1, *conns), log)
	case "tcp":
		err = runTCP(ctx, *listen, *to, log)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("rawquic", "err", err)
		os.Exit(1)
	}
}

// quicConfig mirrors the gateway's: its timeouts and stream limit, and
// quic-go's default flow-control windows.
func quicConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:  5 * time.Second,
		MaxIdleTimeout:        30 * time.Second,
		KeepAlivePeriod:       time.Second, // gateway.DefaultKeepAlivePeriod
		MaxIncomingStreams:    10000,
		MaxIncomingUniStreams: -1,
	}
}

// listenUDP binds a UDP socket with the gateway's buffer sizes.
func listenUDP(addr string) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("rawquic: %w", err)
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("rawquic: %w", err)
	}
	_ = c.SetReadBuffer(udpBufferSize)
	_ = c.SetWriteBuffer(udpBufferSize)
	if raw, err := c.SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpBufferSize)
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, udpBufferSize)
		})
	}
	return c, nil
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"rawquic"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func runServer(ctx context.Context, listen, target string, log *slog.Logger) error {
	cert, err := selfSigned()
	if err != nil {
		return fmt.Errorf("rawquic: certificate: %w", err)
	}
	udp, err := listenUDP(listen)
	if err != nil {
		return err
	}
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	ln, err := tr.Listen(&tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{alpn}, MinVersion: tls.VersionTLS13}, quicConfig())
	if err != nil {
		return fmt.Errorf("rawquic: listen: %w", err)
	}
	log.Info("rawquic server ready", "addr", udp.LocalAddr().String(), "to", target)
	rl := newRelay()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return fmt.Errorf("rawquic: accept: %w", err)
		}
		st := conn.ConnectionState().TLS
		log.Info("rawquic handshake", "version", tlsVersion(st.Version), "group", st.CurveID.String(),
			"cipher", tls.CipherSuiteName(st.CipherSuite), "resumed", st.DidResume)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				s, err := conn.AcceptStream(ctx)
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.DialTimeout("tcp", target, 5*time.Second)
					if err != nil {
						s.CancelRead(resetCode)
						s.CancelWrite(resetCode)
						return
					}
					rl.pipe(c.(*net.TCPConn), s)
				}()
			}
		}()
	}
}

// tlsVersion names a TLS version as OpenSSL does (TLSv1.3).
func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	}
	return fmt.Sprintf("0x%04x", v)
}

func runClient(ctx context.Context, listen, server string, n int, log *slog.Logger) error {
	udp, err := listenUDP("127.0.0.1:0")
	if err != nil {
		return err
	}
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	ua, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		return fmt.Errorf("rawquic: %w", err)
	}
	conns := make([]*quic.Conn, n)
	for i := range conns {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := tr.Dial(dctx, ua, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}, MinVersion: tls.VersionTLS13}, quicConfig())
		cancel()
		if err != nil {
			return fmt.Errorf("rawquic: dial %s: %w", server, err)
		}
		defer conn.CloseWithError(0, "")
		conns[i] = conn
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("rawquic: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	log.Info("rawquic client ready", "addr", ln.Addr().String(), "to", server, "conns", n)
	rl := newRelay()
	var wg sync.WaitGroup
	defer wg.Wait()
	for next := 0; ; next++ {
		conn := conns[next%n]
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("rawquic: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := conn.OpenStreamSync(ctx)
			if err != nil {
				_ = c.Close()
				return
			}
			rl.pipe(c.(*net.TCPConn), s)
		}()
	}
}

// runTCP relays TCP connections from listen to target with the pooled
// copy buffers (no splice: a proxy that terminates TLS cannot splice
// either), the stand-in for a proxy in the 4-hop setup.
func runTCP(ctx context.Context, listen, target string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("rawquic: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	log.Info("rawquic tcp ready", "addr", ln.Addr().String(), "to", target)
	rl := newRelay()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("rawquic: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			d, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				return
			}
			defer d.Close()
			var cw sync.WaitGroup
			cw.Add(1)
			go func() {
				defer cw.Done()
				_ = rl.copyBuf(d, c)
				_ = d.(*net.TCPConn).CloseWrite()
			}()
			_ = rl.copyBuf(c, d)
			_ = c.(*net.TCPConn).CloseWrite()
			cw.Wait()
		}()
	}
}

// relay copies between TCP connections and QUIC streams with pooled
// buffers.
type relay struct{ buffers sync.Pool }

func newRelay() *relay {
	r := &relay{}
	r.buffers.New = func() any { b := make([]byte, bufferSize); return &b }
	return r
}

// pipe copies both ways between c and s; a FIN on one side is passed on as a
// half-close, an error aborts both.
func (r *relay) pipe(c *net.TCPConn, s *quic.Stream) {
	defer c.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // TCP -> stream
		defer wg.Done()
		if err := r.copyBuf(s, c); err != nil {
			s.CancelWrite(resetCode)
			return
		}
		_ = s.Close()
	}()
	go func() { // stream -> TCP
		defer wg.Done()
		if err := r.copyBuf(c, s); err != nil {
			s.CancelRead(resetCode)
			_ = c.SetLinger(0)
			_ = c.Close()
			return
		}
		_ = c.CloseWrite()
	}()
	wg.Wait()
}

func (r *relay) copyBuf(dst io.Writer, src io.Reader) error {
	bp := r.buffers.Get().(*[]byte)
	defer r.buffers.Put(bp)
	// Hide ReaderFrom/WriterTo so that the pooled buffer is used.
	_, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *bp)
	return err
}
