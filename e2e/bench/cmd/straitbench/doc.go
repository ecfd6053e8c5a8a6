// Command straitbench runs Strait's side-by-side benchmarks (package
// e2e/bench) and prints a table, the goals of issue 8 and one JSON object per
// line. Run it from the repository root:
//
//	go run ./e2e/bench/cmd/straitbench -json bench.jsonl
//
// It exits non-zero when a phase failed; the rows measured are printed
// anyway. -smoke runs every phase for about a second per setup, to check
// the harness (the e2e/bench tests run the same in CI).
package main
