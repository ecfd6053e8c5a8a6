package initcmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Main parses the flags of init and cleanup and refuses what it does not
// know before running anything.
func TestMainArguments(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string // empty: no error
		wantOut string // in the usage printed on stderr
	}{
		{name: "init help", args: []string{"--help"}, wantOut: "Usage:\n  strait-init [flags]"},
		{name: "init help flags", args: []string{"-h"}, wantOut: "--exclude-cidr strings"},
		{name: "cleanup help", args: []string{"cleanup", "-h"}, wantOut: "Remove the capture rules"},
		{name: "cleanup usage", args: []string{"cleanup", "--help"}, wantOut: "Usage:\n  strait-init cleanup [flags]"},
		{name: "init bad port", args: []string{"--exclude-port", "0"}, wantErr: "--exclude-port 0 is not 1-65535"},
		{name: "init bad cidr", args: []string{"--exclude-cidr", "10.0.0.0/8,nope"}, wantErr: `--exclude-cidr "nope"`},
		{name: "init bad uid", args: []string{"--exclude-uid", "4294967296"}, wantErr: "--exclude-uid 4294967296 is not a 32-bit ID"},
		{name: "init argument", args: []string{"now"}, wantErr: `unexpected argument "now"`},
		{name: "cleanup argument", args: []string{"cleanup", "now"}, wantErr: `unexpected argument "now"`},
		{name: "init bad owner", args: []string{"--own-dir", "/nonexistent/x", "--owner", "nobody"}, wantErr: `--owner "nobody": want numeric user:group`},
		{name: "init relative dir", args: []string{"--no-capture", "--own-dir", "var/lib/strait/ca"}, wantErr: `--own-dir "var/lib/strait/ca" is not absolute`},
		{name: "cleanup has no own-dir", args: []string{"cleanup", "--own-dir", "/x"}, wantErr: "unknown flag: --own-dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := Main(context.Background(), "strait-init", tc.args, &stdout, &stderr)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Main(%q) = %v, want no error", tc.args, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Main(%q) = %v, want an error with %q", tc.args, err, tc.wantErr)
			}
			if !strings.Contains(stderr.String(), tc.wantOut) {
				t.Errorf("Main(%q) printed %q, want it to contain %q", tc.args, stderr.String(), tc.wantOut)
			}
		})
	}
}

// --own-dir creates the directory and hands it to --owner; with
// --no-capture init installs no rules (this test runs in the host's
// network namespace: a rule installed here would fail the test's premise).
func TestInitOwnDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 65532, 65532 // root can give it away, as in the init container
	}
	owner := strconv.Itoa(uid) + ":" + strconv.Itoa(gid)
	var stdout, stderr bytes.Buffer
	if err := Init(context.Background(), "strait-init", []string{"--no-capture", "--own-dir", dir, "--owner", owner}, &stdout, &stderr); err != nil {
		t.Fatalf("init: %v (%s)", err, stderr.String())
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if !st.IsDir() || int(sys.Uid) != uid || int(sys.Gid) != gid {
		t.Errorf("%s: dir %v owner %d:%d, want %s", dir, st.IsDir(), sys.Uid, sys.Gid, owner)
	}
	if strings.Contains(stdout.String(), "capture rules installed") || !strings.Contains(stdout.String(), "owned by "+owner) {
		t.Errorf("output %q", stdout.String())
	}
}
