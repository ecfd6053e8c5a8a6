#!/usr/bin/env bash
# build.sh builds the tools pinned in e2e/tools/go.mod (the `tool` block) into
# e2e/tools/bin (gitignored). A tool is rebuilt only when its binary is missing
# or was built from another module version, go.sum (any dependency) or Go
# version; the Go build cache keeps rebuilds short.
#
# Usage: e2e/tools/build.sh [-f] [name...]
#   name  binary names to build (default: every tool of the module, as
#         `go list tool` lists them: etcd, etcdctl, fortio; SPIRE has its own
#         module and script, build-spire.sh)
#   -f    rebuild even when up to date
#
# It prints the directory holding the binaries on stdout, so callers can do
#   bin=$(e2e/tools/build.sh etcd etcdctl)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${here}/bin"
force=0
if [[ "${1:-}" == "-f" ]]; then
	force=1
	shift
fi
want=("$@")

# binary_name maps a tool's package path to the name of its binary.
binary_name() {
	case "$1" in
	go.etcd.io/etcd/server/v3) echo etcd ;;
	*/v[0-9]*) basename "$(dirname "$1")" ;;
	*) basename "$1" ;;
	esac
}

wanted() {
	[[ ${#want[@]} -eq 0 ]] && return 0
	local w
	for w in "${want[@]}"; do
		[[ "$w" == "$1" ]] && return 0
	done
	return 1
}

goversion="$(go env GOVERSION)"
sum="$(sha256sum "${here}/go.sum" | cut -c1-16)"
mkdir -p "${bin}"
# Test packages run in parallel and may build the same tool: one at a time.
exec 9>"${bin}/.build.lock"
flock 9
found=()
while read -r pkg version; do
	name="$(binary_name "${pkg}")"
	wanted "${name}" || continue
	found+=("${name}")
	stamp="${bin}/.${name}.stamp"
	want_stamp="${pkg}@${version} ${sum} ${goversion}"
	if [[ ${force} -eq 0 && -x "${bin}/${name}" && -f "${stamp}" \
		&& "$(cat "${stamp}")" == "${want_stamp}" ]]; then
		continue
	fi
	start=$(date +%s)
	echo "building ${name} (${pkg}@${version})" >&2
	(cd "${here}" && go build -trimpath -o "${bin}/${name}" "${pkg}")
	echo "${want_stamp}" >"${stamp}"
	echo "built ${name} in $(($(date +%s) - start))s" >&2
done < <(cd "${here}" && go list -f '{{.ImportPath}} {{.Module.Version}}' tool)

for w in "${want[@]}"; do
	if [[ ! " ${found[*]} " == *" ${w} "* ]]; then
		echo "build.sh: no tool named ${w} in ${here}/go.mod" >&2
		exit 1
	fi
done
echo "${bin}"
