package federation

import (
	"net"
	"net/url"
	"sync"
	"testing"
)

// tcpProxy forwards TCP connections to an etcd member and can cut them, to
// disconnect a client without stopping etcd.
type tcpProxy struct {
	l      net.Listener
	target string

	mu        sync.Mutex
	paused    bool
	blackhole bool // drop every byte, keep the connections open
	conns     map[net.Conn]struct{}
}

// newTCPProxy proxies to the host:port of an http:// URL until the test ends.
func newTCPProxy(t testing.TB, targetURL string) *tcpProxy {
	t.Helper()
	u, err := url.Parse(targetURL)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{l: l, target: u.Host, conns: map[net.Conn]struct{}{}}
	var wg sync.WaitGroup
	wg.Go(func() { p.serve(&wg) })
	t.Cleanup(func() {
		_ = l.Close()
		p.Pause()
		wg.Wait()
	})
	return p
}

// URL is the proxy's client URL.
func (p *tcpProxy) URL() string { return "http://" + p.l.Addr().String() }

func (p *tcpProxy) serve(wg *sync.WaitGroup) {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.paused {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.mu.Unlock()
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			p.copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		wg.Go(func() { pipe(up, c) })
		wg.Go(func() { pipe(c, up) })
	}
}

// copy forwards src to dst, dropping what arrives while blackholed.
func (p *tcpProxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			drop := p.blackhole
			p.mu.Unlock()
			if !drop {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// Blackhole silently drops traffic on every connection, as a partition
// does, until Heal.
func (p *tcpProxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackhole = true
}

// Heal ends a blackhole. Connections that lost bytes are corrupt and get
// cut, as the peer would reset them.
func (p *tcpProxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackhole = false
	for c := range p.conns {
		_ = c.Close()
	}
}

// Pause cuts every connection and refuses new ones until Resume.
func (p *tcpProxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = true
	for c := range p.conns {
		_ = c.Close()
	}
}

// Resume accepts connections again.
func (p *tcpProxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = false
}
