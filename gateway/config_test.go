package gateway

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-multierror"
)

func TestConfigValidation(t *testing.T) {
	_, err := New(Config{Cluster: "Bad_Name", DrainTimeout: -1})
	var merr *multierror.Error
	if !errors.As(err, &merr) {
		t.Fatalf("got %v, want a multierror", err)
	}
	want := []string{"Cluster", "ID", "TrustDomain", "SVIDs", "Bundles", "Snapshots", "negative"}
	if len(merr.Errors) != len(want) {
		t.Fatalf("got %d problems, want %d: %v", len(merr.Errors), len(want), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %s: %v", w, err)
		}
	}
	if !strings.HasPrefix(err.Error(), "gateway: ") {
		t.Errorf("error lacks the package prefix: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.IngressListenAddr != DefaultIngressListenAddr || c.DrainTimeout != DefaultDrainTimeout ||
		c.MaxIncomingStreams != DefaultMaxIncomingStreams || c.Logger == nil || c.DialEndpoint == nil {
		t.Fatalf("defaults not applied: %+v", c)
	}
}
