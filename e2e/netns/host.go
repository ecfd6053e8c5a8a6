package netns

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Host is one network namespace of a topology: a cluster's host, a cluster's
// router, or the WAN namespace. Its methods are safe for concurrent use.
type Host struct {
	topo    *Topology
	name    string // host name inside its cluster; "router" or "wan" otherwise
	cluster string // "" for the WAN namespace
	ns      string // namespace name
	addr    netip.Addr
	fd      int // open handle of the namespace, for setns; closed by Topology.Close
}

// Name returns the host's name in its cluster ("router" for a router, "wan"
// for the WAN namespace).
func (h *Host) Name() string { return h.name }

// Cluster returns the host's cluster name ("" for the WAN namespace).
func (h *Host) Cluster() string { return h.cluster }

// Namespace returns the network namespace's name (for `ip netns exec`).
func (h *Host) Namespace() string { return h.ns }

// Addr returns the host's address (a router's on its cluster's bridge).
func (h *Host) Addr() netip.Addr { return h.addr }

// AddrPort returns "addr:port", for listen and dial strings.
func (h *Host) AddrPort(port int) string {
	return netip.AddrPortFrom(h.addr, uint16(port)).String()
}

// Router returns the router of the host's cluster (itself for a router, nil
// for the WAN namespace).
func (h *Host) Router() *Host {
	if h.cluster == "" {
		return nil
	}
	return h.topo.Cluster(h.cluster).router
}

// String returns "cluster/name".
func (h *Host) String() string {
	if h.cluster == "" {
		return h.name
	}
	return h.cluster + "/" + h.name
}

// Command returns a command that runs name with args inside the namespace
// (through `ip netns exec`, which keeps the process ID). It is killed when
// ctx ends.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
}

// Output runs name with args inside the namespace and returns its standard
// output; the error includes standard error.
func (h *Host) Output(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := h.Command(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("netns: %s: %s %v: %w: %s", h, name, args, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// Do runs fn on an OS thread switched into the namespace. Sockets that fn
// creates belong to the namespace for their whole life; fn must not start
// goroutines that expect to run there.
func (h *Host) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, target, err := h.openNS()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: enter %s: %w", h.ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked and exits with this goroutine
		errc <- ferr
	}()
	return <-errc
}

// Listen opens a stream listener inside the namespace.
func (h *Host) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	var ln net.Listener
	err := h.Do(func() error {
		var lc net.ListenConfig
		var err error
		ln, err = lc.Listen(ctx, network, address)
		return err
	})
	return ln, err
}

// ListenPacket opens a packet listener inside the namespace.
func (h *Host) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := h.Do(func() error {
		var lc net.ListenConfig
		var err error
		pc, err = lc.ListenPacket(ctx, network, address)
		return err
	})
	return pc, err
}

// DialContext dials from inside the namespace. The address must be an IP
// literal (name resolution would run on other threads). Only the socket is
// created inside the namespace: the thread switches back before connecting,
// so thousands of pending connects hold no OS thread each.
func (h *Host) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, target, err := h.openNS()
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{err: err}
			return
		}
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			res <- result{err: fmt.Errorf("netns: enter %s: %w", h.ns, err)}
			return
		}
		inside := true
		leave := func() error {
			if !inside {
				return nil
			}
			if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("netns: leave %s: %w", h.ns, err) // the thread stays locked and dies
			}
			inside = false
			runtime.UnlockOSThread()
			return nil
		}
		d := net.Dialer{Control: func(string, string, syscall.RawConn) error {
			// The socket exists (in the namespace); connect from anywhere.
			return leave()
		}}
		c, err := d.DialContext(ctx, network, address)
		if lerr := leave(); lerr != nil && err == nil {
			c.Close()
			c, err = nil, lerr
		}
		res <- result{c: c, err: err}
	}()
	r := <-res
	return r.c, r.err
}

// openNS returns handles of the process's own network namespace and the
// host's, both kept open by the topology.
func (h *Host) openNS() (orig, target int, err error) {
	if h.topo.rootFD < 0 || h.fd < 0 {
		return -1, -1, ErrClosed
	}
	return h.topo.rootFD, h.fd, nil
}

// HTTPClient returns an HTTP client whose connections start inside the
// namespace; keep-alives are off so every request opens a new connection.
func (h *Host) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:       h.DialContext,
		DisableKeepAlives: true,
	}}
}

// ip runs `ip -n <ns> args...`.
func (h *Host) ip(ctx context.Context, args ...string) error {
	return runIP(ctx, append([]string{"-n", h.ns}, args...)...)
}

func runIP(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netns: ip %v: %w: %s", args, err, bytes.TrimSpace(out))
	}
	return nil
}

// sysctl sets a sysctl inside the namespace by writing /proc/sys (which
// resolves network sysctls for the namespace of the writing thread), so no
// sysctl binary is needed.
func (h *Host) sysctl(ctx context.Context, key string, value int) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	err := h.Do(func() error { return os.WriteFile(path, []byte(strconv.Itoa(value)+"\n"), 0o644) })
	if err != nil {
		return fmt.Errorf("netns: %s: sysctl %s=%d: %w", h, key, value, err)
	}
	return nil
}
