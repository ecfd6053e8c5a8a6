package scale

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
const clockTicks = 100

// etcdCluster is a 3-member etcd of child processes on loopback.
type etcdCluster struct {
	members []*etcdMember
}

type etcdMember struct {
	name      string
	clientURL string
	cmd       *exec.Cmd
	done      chan struct{}
}

// freePorts reserves n loopback ports and releases them for etcd.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("scale: reserve a port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// startEtcd starts members members of the etcd binary bin with their data
// and logs under dir, with the raft heartbeat interval and election
// timeout given, and waits until every member answers /health.
func startEtcd(ctx context.Context, bin, dir string, members int, quota int64, heartbeat, election time.Duration) (*etcdCluster, error) {
	ports, err := freePorts(2 * members)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range members {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	c := &etcdCluster{}
	for i := range members {
		name := fmt.Sprintf("m%d", i)
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			c.kill()
			return nil, fmt.Errorf("scale: etcd log: %w", err)
		}
		cmd := exec.Command(bin,
			"--name", name, "--data-dir", filepath.Join(dir, name),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "strait-scale", "--quota-backend-bytes", strconv.FormatInt(quota, 10),
			"--auto-compaction-mode", "periodic", "--auto-compaction-retention", "5m",
			"--heartbeat-interval", strconv.FormatInt(heartbeat.Milliseconds(), 10),
			"--election-timeout", strconv.FormatInt(election.Milliseconds(), 10),
			"--log-level", "warn")
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			_ = logf.Close()
			c.kill()
			return nil, fmt.Errorf("scale: start etcd %s: %w", name, err)
		}
		_ = logf.Close()
		m := &etcdMember{name: name, clientURL: client, cmd: cmd, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(m.done) }()
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		if err := m.waitHealthy(ctx); err != nil {
			c.kill()
			return nil, err
		}
	}
	return c, nil
}

func (m *etcdMember) waitHealthy(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-m.done:
			return fmt.Errorf("scale: etcd %s exited at start (see its log)", m.name)
		default:
		}
		resp, err := http.Get(m.clientURL + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"true"`) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("scale: etcd %s not healthy after 60s: %v", m.name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// endpoints are the members' client URLs.
func (c *etcdCluster) endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, m.clientURL)
	}
	return out
}

// kill SIGKILLs every member and waits for it.
func (c *etcdCluster) kill() {
	for _, m := range c.members {
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

// etcdStats is what the members cost at one instant, summed or maxed over
// members.
type etcdStats struct {
	at         time.Time
	cpuSeconds float64 // user+system, summed
	rssBytes   int64   // largest member
	dbBytes    float64 // largest member's database file
	dbInUse    float64 // largest member's logical database size
	keepAlives float64 // LeaseKeepAlive messages received, summed
	events     float64 // watch events sent, summed
	grpcMsgs   float64 // gRPC messages received, summed
	committed  float64 // raft entries committed: the largest member's index
	applyLag   float64 // entries committed but not applied, the most behind member
	grants     float64 // LeaseGrant requests received, summed
	txns       float64 // Txn requests received, summed
}

// stats samples /proc and /metrics of every member.
func (c *etcdCluster) stats() (etcdStats, error) {
	s := etcdStats{at: time.Now()}
	for _, m := range c.members {
		cpu, rss, err := procStats(m.cmd.Process.Pid)
		if err != nil {
			return s, err
		}
		s.cpuSeconds += cpu
		s.rssBytes = max(s.rssBytes, rss)
		mt, err := scrape(m.clientURL + "/metrics")
		if err != nil {
			return s, err
		}
		s.dbBytes = max(s.dbBytes, mt.sum("etcd_mvcc_db_total_size_in_bytes", ""))
		s.dbInUse = max(s.dbInUse, mt.sum("etcd_mvcc_db_total_size_in_use_in_bytes", ""))
		s.keepAlives += mt.sum("grpc_server_msg_received_total", `grpc_method="LeaseKeepAlive"`)
		s.events += mt.sum("etcd_debugging_mvcc_events_total", "")
		s.grpcMsgs += mt.sum("grpc_server_msg_received_total", "")
		committed := mt.sum("etcd_server_proposals_committed_total", "")
		s.committed = max(s.committed, committed)
		s.applyLag = max(s.applyLag, committed-mt.sum("etcd_server_proposals_applied_total", ""))
		s.grants += mt.sum("grpc_server_msg_received_total", `grpc_method="LeaseGrant"`)
		s.txns += mt.sum("grpc_server_msg_received_total", `grpc_method="Txn"`)
	}
	return s, nil
}

// procStats reads a process's CPU time and resident set size.
func procStats(pid int) (cpuSeconds float64, rssBytes int64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("scale: %w", err)
	}
	// Fields after the command name (which may hold spaces) start at ')'.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return 0, 0, errors.New("scale: unparsable /proc stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 22 {
		return 0, 0, errors.New("scale: short /proc stat")
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	rssPages, _ := strconv.ParseInt(f[21], 10, 64)
	return (utime + stime) / clockTicks, rssPages * int64(os.Getpagesize()), nil
}

// metrics are the lines of a Prometheus text exposition.
type metrics []string

func scrape(url string) (metrics, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, fmt.Errorf("scale: scrape %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out metrics
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); line != "" && line[0] != '#' {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scale: scrape %s: %w", url, err)
	}
	return out, nil
}

// sum adds the values of every series of name whose labels contain label.
func (m metrics) sum(name, label string) float64 {
	total := 0.0
	for _, line := range m {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		if label != "" && !strings.Contains(rest, label) {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			total += v
		}
	}
	return total
}
