package buildflags

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrSyntax is the error of a line that is not one flag.
var ErrSyntax = errors.New("not one flag")

// Read returns the flags in the file at path, in order: one a line, each
// starting with "-" and holding no space; empty lines and lines starting
// with "#" are skipped.
func Read(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("buildflags: %w", err)
	}
	return Parse(data)
}

// Parse returns the flags in data, as Read does.
func Parse(data []byte) ([]string, error) {
	var flags []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.HasPrefix(line, "-") || strings.ContainsAny(line, " \t") {
			return nil, fmt.Errorf("buildflags: line %d %q: %w", n, line, ErrSyntax)
		}
		flags = append(flags, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("buildflags: %w", err)
	}
	return flags, nil
}
