package main

import (
	"context"
	"strings"
	"testing"
)

// strait inject refuses bad flags and a missing certificate with a clear
// error before serving anything.
func TestInjectCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "no certificate", args: []string{"inject"}, want: `required flag(s) "cert", "key" not set`},
		{name: "missing files", args: []string{"inject", "--cert", "/nonexistent/tls.crt", "--key", "/nonexistent/tls.key", "--admin", ""},
			want: "inject: serving certificate: stat /nonexistent/tls.crt: no such file or directory"},
		{name: "bad pull policy", args: []string{"inject", "--cert", "a", "--key", "b", "--pull-policy", "Sometimes"},
			want: `pull policy "Sometimes": want Always, IfNotPresent or Never`},
		{name: "relative CA dir", args: []string{"inject", "--cert", "a", "--key", "b", "--ca-dir", "ca"}, want: `CA dir "ca" is not absolute`},
		{name: "bad log level", args: []string{"inject", "--cert", "a", "--key", "b", "--log-level", "loud"}, want: `--log-level "loud"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newRootCmd()
			root.SetArgs(tc.args)
			err := root.ExecuteContext(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
