package buildflags

import (
	"errors"
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
		err  error
	}{
		{"flags and comments", "# comment\n-tags=a\n\n  -gcflags=all=-l  \n#-gcflags=x=\n-gcflags=net=\n",
			[]string{"-tags=a", "-gcflags=all=-l", "-gcflags=net="}, nil},
		{"empty", "", nil, nil},
		{"two flags on a line", "-tags=a -trimpath\n", nil, ErrSyntax},
		{"not a flag", "grpcnotrace\n", nil, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if !errors.Is(err, tt.err) {
				t.Fatalf("Parse: error %v, want %v", err, tt.err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Parse = %q, want %q", got, tt.want)
			}
		})
	}
}
