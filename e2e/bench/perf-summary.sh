#!/usr/bin/env bash
# perf-summary.sh summarizes a profile that `straitbench -perf DIR` recorded:
# the share of samples per process (the harness logs which pid is which
# gateway or proxy), kernel versus user time, and the heaviest call paths
# with their children.
#
# Usage: e2e/bench/perf-summary.sh DIR/strait-1.perf.data [pid,...]
set -euo pipefail
data="$1"
pids="${2:-}"
filter=()
if [[ -n "${pids}" ]]; then
	filter=(--pid "${pids}")
fi
echo "== samples per process"
perf script -i "${data}" -F pid 2>/dev/null | sort | uniq -c | sort -rn |
	awk '{n[$2]=$1; t+=$1} END {for (p in n) printf "pid %s: %d samples, %.1f%%\n", p, n[p], 100*n[p]/t}'
echo "== kernel / user (all processes)"
perf report -i "${data}" --no-children --sort dso --stdio -g none 2>/dev/null |
	grep -v '^#' | grep -v '^$' | head -4
echo "== heaviest paths (with children)"
perf report -i "${data}" "${filter[@]}" --children --sort sym --stdio -g none 2>/dev/null |
	grep -v '^#' | grep -v '^$' | head -60
