package proxycmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// Main parses the flags of both forms of the command (strait proxy and
// strait-proxy) and refuses what it does not know before running anything.
func TestMainArguments(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string // empty: no error
		wantOut string // in the usage printed on stderr
	}{
		{name: "help", args: []string{"--help"}, wantOut: "--upstream stringArray"},
		{name: "short help", args: []string{"-h"}, wantOut: "Usage:\n  strait-proxy --config proxy.yaml"},
		{name: "no config", args: nil, wantErr: `required flag "config" not set`},
		{name: "missing config file", args: []string{"-c", "/nonexistent/proxy.yaml"}, wantErr: "no such file"},
		{name: "unknown flag", args: []string{"--bogus"}, wantErr: "unknown flag: --bogus"},
		{name: "argument", args: []string{"--config", "x.yaml", "extra"}, wantErr: `unexpected argument "extra"`},
		// The test binary has no strait-init beside it.
		{name: "init", args: []string{"init", "--no-capture"}, wantErr: "strait-proxy init: no strait-init binary beside this one"},
		{name: "cleanup", args: []string{"cleanup"}, wantErr: "strait-proxy cleanup: no strait-init binary beside this one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := Main(context.Background(), "strait-proxy", tc.args, &stdout, &stderr)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Main(%q) = %v, want no error", tc.args, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Main(%q) = %v, want an error with %q", tc.args, err, tc.wantErr)
			}
			if isInit := len(tc.args) > 0 && (tc.args[0] == "init" || tc.args[0] == "cleanup"); isInit != errors.Is(err, ErrNoInitBinary) {
				t.Errorf("Main(%q) = %v: errors.Is ErrNoInitBinary %v, want %v", tc.args, err, !isInit, isInit)
			}
			if !strings.Contains(stderr.String(), tc.wantOut) {
				t.Errorf("Main(%q) printed %q, want it to contain %q", tc.args, stderr.String(), tc.wantOut)
			}
		})
	}
}

// The flags apply over the config file: --upstream adds to its upstreams,
// --pprof turns pprof on.
func TestFlagsOverFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.yaml")
	data := "cluster: west\nupstreams: [\"a.default:80=127.0.0.1:8001\"]\nidentity: {trustDomain: west.test, caDir: /tmp/ca}\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fl := addFlags(fs)
	if err := fs.Parse([]string{"-c", path, "--upstream", "b.default:81=127.0.0.1:8002", "--upstream=c.default:82=127.0.0.1:8003", "--pprof"}); err != nil {
		t.Fatal(err)
	}
	f, err := fl.file()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a.default:80=127.0.0.1:8001", "b.default:81=127.0.0.1:8002", "c.default:82=127.0.0.1:8003"}
	if !slices.Equal(f.Upstreams, want) || !f.Pprof || f.Cluster != "west" {
		t.Errorf("file = upstreams %q pprof %v cluster %q, want %q true west", f.Upstreams, f.Pprof, f.Cluster, want)
	}
	if _, err := f.Config(); err != nil {
		t.Errorf("Config: %v", err)
	}
}

// --transparent adds the transparent section (at its defaults) when the
// file has none and keeps the file's; --no-mark needs one.
func TestTransparentFlags(t *testing.T) {
	base := "cluster: west\nidentity: {trustDomain: west.test, caDir: /tmp/ca}\n"
	tests := []struct {
		name    string
		file    string
		args    []string
		want    *TransparentFile
		mark    uint32
		wantErr string
	}{
		{name: "none", file: base},
		{name: "flag", file: base, args: []string{"--transparent"}, want: &TransparentFile{}, mark: 0x5354},
		{name: "flag without mark", file: base, args: []string{"--transparent", "--no-mark"}, want: &TransparentFile{NoMark: true}},
		{name: "file's section kept", file: base + "transparent: {listen: 127.0.0.1:25001}\n", args: []string{"--transparent"},
			want: &TransparentFile{Listen: "127.0.0.1:25001"}, mark: 0x5354},
		{name: "file's noMark", file: base + "transparent: {noMark: true}\n", want: &TransparentFile{NoMark: true}},
		{name: "no-mark alone", file: base, args: []string{"--no-mark"}, wantErr: "--no-mark without --transparent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "proxy.yaml")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			fl := addFlags(fs)
			if err := fs.Parse(append([]string{"-c", path}, tt.args...)); err != nil {
				t.Fatal(err)
			}
			f, err := fl.file()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("file() = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (f.Transparent == nil) != (tt.want == nil) || f.Transparent != nil && *f.Transparent != *tt.want {
				t.Errorf("transparent = %+v, want %+v", f.Transparent, tt.want)
			}
			if got := f.Transparent.mark(); got != tt.mark {
				t.Errorf("mark = %#x, want %#x", got, tt.mark)
			}
		})
	}
}
