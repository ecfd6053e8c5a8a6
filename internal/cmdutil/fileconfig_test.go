package cmdutil

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestExpandPlaceholders(t *testing.T) {
	env := map[string]string{"POD_IP": "10.244.0.5", "ETCD_ENDPOINT": "http://etcd:2379", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		name, in, want string
		unset          bool
	}{
		{name: "none", in: "cluster: east\n", want: "cluster: east\n"},
		{name: "two", in: `advertise: "@POD_IP@:15006"` + "\netcd: [\"@ETCD_ENDPOINT@\"]", want: `advertise: "10.244.0.5:15006"` + "\netcd: [\"http://etcd:2379\"]"},
		{name: "set but empty", in: "a: @EMPTY@x", want: "a: x"},
		{name: "lower case is not a placeholder", in: "email: ops@example@org", want: "email: ops@example@org"},
		{name: "unset", in: "id: @POD_NAME@ @NODE_IP@ @POD_NAME@", unset: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ExpandPlaceholders([]byte(tt.in), lookup)
			if tt.unset {
				if !errors.Is(err, ErrUnsetPlaceholder) || err.Error() != "placeholder of an unset environment variable: @POD_NAME@, @NODE_IP@" {
					t.Fatalf("error %v", err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestReadFileExpands(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("listen: \"@STRAIT_TEST_ADDR@:15006\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var lf ListenFile
	if err := ReadFile(path, &lf); !errors.Is(err, ErrUnsetPlaceholder) {
		t.Fatalf("unset: %v", err)
	}
	t.Setenv("STRAIT_TEST_ADDR", "10.0.0.7")
	if err := ReadFile(path, &lf); err != nil || lf.Listen != "10.0.0.7:15006" {
		t.Fatalf("%+v %v", lf, err)
	}
}
