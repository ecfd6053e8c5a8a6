#!/usr/bin/env bash
# build.sh builds the Kubernetes binaries of the k8s.io/kubernetes release
# pinned in e2e/kubetools/go.mod, and CoreDNS from the release pinned in
# e2e/kubetools/coredns/go.mod, into e2e/kubetools/bin (gitignored). A binary
# is rebuilt only when it is missing or was built from another module version
# or Go version; the Go build cache keeps rebuilds short.
#
# Cold builds take about 12 minutes of CPU in all. Measured on 2 cores shared
# with a heavily loaded machine (load average 20 to 40), in this order:
# kubelet 26 minutes, kube-controller-manager 14, kubectl 1.5, kube-scheduler
# and kube-proxy under 20 s, CoreDNS 4 minutes, then kube-apiserver 15 s (its
# packages were cached by the others). Warm: about a second in all.
#
# Usage: e2e/kubetools/build.sh [-f] [name...]
#   name  binaries to build: kube-apiserver (the default),
#         kube-controller-manager, kube-scheduler, kube-proxy, kubelet,
#         kubectl, coredns, or "node" for all of them (what e2e/kubenode runs)
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
want=()
for name in "$@"; do
	if [[ "${name}" == node ]]; then
		want+=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl coredns)
	else
		want+=("${name}")
	fi
done
if [[ ${#want[@]} -eq 0 ]]; then
	want=(kube-apiserver)
fi

goversion="$(go env GOVERSION)"
mkdir -p "${bin}"
# Test packages run in parallel and may build the same binary: one at a time.
exec 9>"${bin}/.build.lock"
flock 9
for name in "${want[@]}"; do
	cgo="$(go env CGO_ENABLED)"
	case "${name}" in
	kube-apiserver | kube-controller-manager | kube-scheduler | kube-proxy | kubelet | kubectl)
		dir="${here}"
		mod=k8s.io/kubernetes
		pkg="k8s.io/kubernetes/cmd/${name}"
		;;
	coredns)
		dir="${here}/coredns"
		mod=github.com/coredns/coredns
		pkg=.
		# It runs in a pod whose image holds nothing else: static.
		cgo=0
		;;
	*)
		echo "build.sh: unknown binary ${name}" >&2
		exit 1
		;;
	esac
	version="$(cd "${dir}" && go list -m -f '{{.Version}}' "${mod}")"
	stamp="${bin}/.${name}.stamp"
	want_stamp="${mod}@${version} ${goversion}"
	if [[ "${cgo}" == 0 ]]; then
		want_stamp+=" static"
	fi
	if [[ ${force} -eq 0 && -x "${bin}/${name}" && -f "${stamp}" &&
		"$(cat "${stamp}")" == "${want_stamp}" ]]; then
		continue
	fi
	start=$(date +%s)
	echo "building ${name} (${mod}@${version})" >&2
	# -trimpath and no debug information keep the binaries small; the
	# version ldflags let the Kubernetes binaries report the release they
	# were built from instead of v0.0.0-master.
	ldflags="-s -w"
	if [[ "${mod}" == k8s.io/kubernetes ]]; then
		p="k8s.io/component-base/version"
		ldflags+=" -X ${p}.gitVersion=${version} -X ${p}.gitMajor=1"
		ldflags+=" -X ${p}.gitMinor=$(echo "${version}" | cut -d. -f2)"
	fi
	(cd "${dir}" && CGO_ENABLED="${cgo}" go build -trimpath -ldflags "${ldflags}" \
		-o "${bin}/${name}.tmp" "${pkg}")
	mv "${bin}/${name}.tmp" "${bin}/${name}"
	echo "${want_stamp}" >"${stamp}"
	echo "built ${name} in $(($(date +%s) - start))s" >&2
done
echo "${bin}"
