package bench

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/devcluster"
)

// BenchmarkStraitStream pushes bytes one way through one long-lived
// connection over Strait's full path, in process (devcluster: east proxy,
// east gateway, QUIC, west gateway, west proxy, echo app), so that a CPU
// profile shows where the bulk path spends its time:
//
//	go test ./e2e/bench -run '^$' -bench StraitStream -benchtime 3000x -cpuprofile cpu.out
//	go tool pprof -top cpu.out
//
// The echo app sends every byte back; the benchmark reads them on another
// goroutine, so both directions carry the load.
func BenchmarkStraitStream(b *testing.B) {
	cfg := devcluster.DefaultConfig(b.TempDir())
	cfg.EtcdClientURL = ""
	cfg.Clusters[0].Client.Upstreams = []devcluster.UpstreamSpec{{Service: "echo", Port: 7000, ListenAddr: "127.0.0.1:0"}}
	cfg.Clusters[1].Services = []devcluster.ServiceSpec{{Name: "echo", Port: 7000, App: devcluster.AppEcho, Export: true,
		Consumers: []string{"spiffe://east.strait.local"}}}
	f, err := devcluster.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case <-f.Ready():
	case err := <-done:
		b.Fatalf("federation ended before ready: %v", err)
	case <-time.After(time.Minute):
		b.Fatal("federation not ready after 1m")
	}
	var c net.Conn
	for i := range 50 {
		if c, err = net.Dial("tcp", f.UpstreamAddr("east", "echo")); err == nil {
			break
		}
		if i == 49 {
			b.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer c.Close()
	chunk := make([]byte, 1<<20)
	if _, err := rand.Read(chunk); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(chunk)))
	read := make(chan error, 1)
	b.ResetTimer()
	go func() {
		_, err := io.CopyN(io.Discard, c, int64(b.N)*int64(len(chunk)))
		read <- err
	}()
	for range b.N {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-read; err != nil {
		b.Fatal(err)
	}
}
