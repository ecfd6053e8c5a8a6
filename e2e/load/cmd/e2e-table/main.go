// Command e2e-table prints the table of end-to-end scenario results that
// tests appended to the file named by STRAIT_E2E_REPORT (see load.Report):
//
//	export STRAIT_E2E_REPORT=$(mktemp)
//	go test -count=1 ./e2e/...
//	go run ./e2e/load/cmd/e2e-table "$STRAIT_E2E_REPORT"
//
// It exits 1 when a row failed.
package main

import (
	"fmt"
	"os"

	"github.com/strait-mesh/strait/e2e/load"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: e2e-table REPORT_FILE")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	rows, err := load.ReadRows(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := load.PrintTable(os.Stdout, rows); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, r := range rows {
		if !r.Pass {
			os.Exit(1)
		}
	}
}
