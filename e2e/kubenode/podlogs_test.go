//go:build kubenode

package kubenode_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// podLogKeeper copies, while the federation runs, what the kubelets write
// to the pod logs of the namespaces it watches, so that the evidence of a
// failed request still exists after the pods that logged it were deleted
// (a rolled out gateway) and after the kubelet rotated a log: `kubectl
// logs` shows neither. It reads the files every interval and keeps each
// file's new bytes, by inode (a rotated file keeps its inode).
type podLogKeeper struct {
	dirs       map[string]string // cluster -> kubelet pod log directory
	namespaces []string

	mu   sync.Mutex
	read map[uint64]int64         // inode -> bytes read
	logs map[string]*bytes.Buffer // cluster/namespace_pod_uid/container -> lines
}

func newPodLogKeeper(dirs map[string]string, namespaces ...string) *podLogKeeper {
	return &podLogKeeper{dirs: dirs, namespaces: namespaces, read: map[uint64]int64{}, logs: map[string]*bytes.Buffer{}}
}

// run copies until ctx is done, then once more.
func (k *podLogKeeper) run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		k.sweep()
		select {
		case <-ctx.Done():
			k.sweep()
			return
		case <-tick.C:
		}
	}
}

// sweep reads what was appended to every watched log since the last sweep.
func (k *podLogKeeper) sweep() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for cluster, dir := range k.dirs {
		for _, ns := range k.namespaces {
			files, _ := filepath.Glob(filepath.Join(dir, ns+"_*", "*", "*.log*"))
			for _, file := range files {
				if strings.HasSuffix(file, ".gz") {
					continue
				}
				rel, _ := filepath.Rel(dir, filepath.Dir(file))
				k.copyNew(cluster+"/"+rel, file)
			}
		}
	}
}

func (k *podLogKeeper) copyNew(key, file string) {
	f, err := os.Open(file)
	if err != nil {
		return // removed with its pod meanwhile
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	off := k.read[st.Ino]
	if fi.Size() <= off {
		return
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return
	}
	// Keep whole lines only: the rest is read again next time.
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		return
	}
	k.read[st.Ino] = off + int64(len(b))
	buf := k.logs[key]
	if buf == nil {
		buf = &bytes.Buffer{}
		k.logs[key] = buf
	}
	buf.Write(b)
}

// lines returns the kept lines of the containers named container in the
// pods of cluster and namespace whose name starts with podPrefix, in the
// order the kubelet stamped them, without the CRI prefix (time, stream,
// tag) and each prefixed with its pod's name.
func (k *podLogKeeper) lines(cluster, namespace, podPrefix, container string) []string {
	k.sweep()
	k.mu.Lock()
	defer k.mu.Unlock()
	type line struct {
		at   time.Time
		text string
	}
	var all []line
	for key, buf := range k.logs {
		c, rest, _ := strings.Cut(key, "/")
		podDir, ctr, _ := strings.Cut(rest, "/")
		parts := strings.SplitN(podDir, "_", 3) // namespace, pod, uid
		if c != cluster || len(parts) != 3 || parts[0] != namespace || !strings.HasPrefix(parts[1], podPrefix) || ctr != container {
			continue
		}
		for _, l := range strings.Split(buf.String(), "\n") {
			// <time> <stream> <tag> <message>
			f := strings.SplitN(l, " ", 4)
			if len(f) != 4 {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, f[0])
			if err != nil {
				continue
			}
			all = append(all, line{at, parts[1] + " " + f[3]})
		}
	}
	slices.SortStableFunc(all, func(a, b line) int { return a.at.Compare(b.at) })
	out := make([]string, len(all))
	for i, l := range all {
		out[i] = l.text
	}
	return out
}

// writeTo writes every kept log to dir/<cluster>/<pod directory>/<container>.log.
func (k *podLogKeeper) writeTo(dir string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, buf := range k.logs {
		path := filepath.Join(dir, key+".log")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}
