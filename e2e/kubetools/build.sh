#!/usr/bin/env bash
# build.sh builds kube-apiserver and kube-controller-manager from the
# k8s.io/kubernetes release pinned in e2e/kubetools/go.mod into
# e2e/kubetools/bin (gitignored). A binary is rebuilt only when it is missing or
# was built from another module version or Go version; the Go build cache keeps
# rebuilds short. A cold build takes about 3 minutes per binary on 2 cores.
#
# Usage: e2e/kubetools/build.sh [-f] [name...]
#   name  binary names to build: kube-apiserver (the default) and
#         kube-controller-manager (not used by the tests: they write
#         EndpointSlices themselves)
#   -f    rebuild even when up to date
#
# It prints the directory holding the binaries on stdout, so callers can do
#   bin=$(e2e/kubetools/build.sh kube-apiserver)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${here}/bin"
force=0
if [[ "${1:-}" == "-f" ]]; then
	force=1
	shift
fi
want=("$@")
if [[ ${#want[@]} -eq 0 ]]; then
	want=(kube-apiserver)
fi

goversion="$(go env GOVERSION)"
version="$(cd "${here}" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
mkdir -p "${bin}"
# Test packages run in parallel and may build the same binary: one at a time.
exec 9>"${bin}/.build.lock"
flock 9
for name in "${want[@]}"; do
	case "${name}" in
	kube-apiserver | kube-controller-manager) ;;
	*)
		echo "build.sh: unknown binary ${name}" >&2
		exit 1
		;;
	esac
	stamp="${bin}/.${name}.stamp"
	want_stamp="k8s.io/kubernetes@${version} ${goversion}"
	if [[ ${force} -eq 0 && -x "${bin}/${name}" && -f "${stamp}" &&
		"$(cat "${stamp}")" == "${want_stamp}" ]]; then
		continue
	fi
	start=$(date +%s)
	echo "building ${name} (k8s.io/kubernetes@${version})" >&2
	# -trimpath and no debug information keep the binaries small; the
	# version ldflags let the servers report the release they were built
	# from instead of v0.0.0-master.
	p="k8s.io/component-base/version"
	ldflags="-s -w -X ${p}.gitVersion=${version} -X ${p}.gitMajor=1"
	ldflags+=" -X ${p}.gitMinor=$(echo "${version}" | cut -d. -f2)"
	(cd "${here}" && go build -trimpath -ldflags "${ldflags}" \
		-o "${bin}/${name}.tmp" "k8s.io/kubernetes/cmd/${name}")
	mv "${bin}/${name}.tmp" "${bin}/${name}"
	echo "${want_stamp}" >"${stamp}"
	echo "built ${name} in $(($(date +%s) - start))s" >&2
done
echo "${bin}"
