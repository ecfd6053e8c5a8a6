package proxyproto

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// DefaultHeaderTimeout bounds how long Conn waits for the header.
const DefaultHeaderTimeout = 5 * time.Second

// ListenerConfig configures NewListener. The zero value is ready to use.
type ListenerConfig struct {
	// HeaderTimeout bounds how long a connection may take to send its
	// header. Zero means DefaultHeaderTimeout.
	HeaderTimeout time.Duration
}

// Listener wraps a net.Listener so that every accepted connection is a
// *Conn. Accept does not wait for the header: it is read on the connection's
// first Read or Header call, so a slow client cannot stall the accept loop.
type Listener struct {
	net.Listener
	timeout time.Duration
}

// NewListener wraps ln.
func NewListener(ln net.Listener, cfg ListenerConfig) *Listener {
	if cfg.HeaderTimeout == 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	return &Listener{Listener: ln, timeout: cfg.HeaderTimeout}
}

// Accept returns the next connection as a *Conn.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return NewConn(c, l.timeout), nil
}

// Conn is a connection that begins with a PROXY v2 header. Read returns the
// bytes after the header; a connection whose header is missing or invalid
// fails every Read with the header error. RemoteAddr and LocalAddr stay those
// of the underlying connection: use Header for the original ones.
type Conn struct {
	net.Conn
	timeout time.Duration

	once   sync.Once
	br     *bufio.Reader
	header *Header
	err    error

	mu       sync.Mutex
	deadline time.Time // the read deadline the user set, restored after the header
}

// NewConn wraps c, which must begin with a PROXY v2 header that arrives
// within timeout (zero means DefaultHeaderTimeout).
func NewConn(c net.Conn, timeout time.Duration) *Conn {
	if timeout == 0 {
		timeout = DefaultHeaderTimeout
	}
	return &Conn{Conn: c, timeout: timeout}
}

// Header reads the header if it has not been read yet and returns it.
func (c *Conn) Header() (*Header, error) {
	c.once.Do(c.readHeader)
	return c.header, c.err
}

func (c *Conn) readHeader() {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		c.err = err
		return
	}
	c.br = bufio.NewReaderSize(c.Conn, 256)
	c.header, c.err = Read(c.br)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.Conn.SetReadDeadline(c.deadline); err != nil && c.err == nil {
		c.err = err
	}
}

// Read reads payload after the header.
func (c *Conn) Read(p []byte) (int, error) {
	if _, err := c.Header(); err != nil {
		return 0, err
	}
	if c.br.Buffered() > 0 {
		return c.br.Read(p)
	}
	return c.Conn.Read(p)
}

// SetReadDeadline sets the read deadline; one set while the header is being
// read takes effect after it.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline sets both deadlines, as SetReadDeadline does for reads.
func (c *Conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.Conn.SetDeadline(t)
}

// CloseWrite half-closes the connection when the underlying one supports it.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
