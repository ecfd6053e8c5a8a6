package relay

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// quicPair returns the two ends of one bidirectional stream of a loopback
// QUIC connection (TLS 1.3, a throwaway certificate).
func quicPair(b *testing.B) (client, server *quic.Stream) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"relay"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos: []string{"relay-bench"}, MinVersion: tls.VersionTLS13}
	ln, err := quic.ListenAddr("127.0.0.1:0", conf, &quic.Config{MaxIdleTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc, err := quic.DialAddr(ctx, ln.Addr().String(),
		&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"relay-bench"}, MinVersion: tls.VersionTLS13},
		&quic.Config{MaxIdleTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cc.CloseWithError(0, "") })
	client, err = cc.OpenStreamSync(ctx)
	if err != nil {
		b.Fatal(err)
	}
	// The server learns of the stream with its first byte.
	if _, err := client.Write([]byte{0}); err != nil {
		b.Fatal(err)
	}
	sc, err := ln.Accept(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if server, err = sc.AcceptStream(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(server, make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
	return client, server
}

// BenchmarkRelayPingPong1KiB is the per-request path of a gateway pair at
// small messages, in one process: a client writes 1 KiB and waits for the
// 1 KiB answer through TCP → relay → QUIC stream → relay → TCP → an echo,
// as each request at 1000 rps crosses the egress and ingress gateways. It
// counts the relays' copies, the quic-go connection's packet handling and
// every goroutine hand-off between them; run it with -cpu 1,2 to see what
// the scheduler's wake-ups of other threads cost:
//
//	go test ./gateway/relay -run '^$' -bench PingPong -cpu 1,2 -cpuprofile cpu.out
func BenchmarkRelayPingPong1KiB(b *testing.B) {
	r := New(Config{})
	client, egressIn := tcpPair(b)
	ingressOut, echo := tcpPair(b)
	up, down := quicPair(b)
	go r.Pipe(TCP(egressIn), Stream(up, 1), Counters{})
	go r.Pipe(Stream(down, 1), TCP(ingressOut), Counters{})
	go func() { _, _ = io.Copy(echo, echo) }()
	msg := make([]byte, 1024)
	buf := make([]byte, len(msg))
	b.SetBytes(int64(2 * len(msg)))
	b.ReportAllocs()
	before := cpuTime(b)
	for b.Loop() {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(client, buf); err != nil {
			b.Fatal(err)
		}
	}
	// CPU time of the whole process (client and echo included) per round
	// trip: what a request costs, whatever the load of the machine does to
	// the wall time.
	b.ReportMetric(float64(cpuTime(b)-before)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process' user and system time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
