#!/usr/bin/env bash
# build.sh builds the Kubernetes binaries of the k8s.io/kubernetes release
# pinned in e2e/kubetools/go.mod, and CoreDNS from the release pinned in
# e2e/kubetools/coredns/go.mod, into e2e/kubetools/bin (gitignored). A binary
# is rebuilt only when it is missing or was built from another module version
# or Go version; the Go build cache keeps rebuilds short.
#
# The Kubernetes binaries that are stale are built by one go build
# invocation (their shared packages are compiled once, in parallel), then
# CoreDNS. Cold builds took about 12 minutes of CPU in all when they were
# built one after another (measured on 2 cores shared with a heavily loaded
# machine: kubelet 26 minutes, kube-controller-manager 14, kubectl 1.5,
# kube-scheduler and kube-proxy under 20 s, CoreDNS 4 minutes, then
# kube-apiserver 15 s as its packages were cached by the others). Warm:
# about a second in all.
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
# stale prints the names among its arguments whose binary is missing or
# was built from another module version or Go version (with -f: all).
stale() {
	local name
	for name in "$@"; do
		if [[ ${force} -eq 1 || ! -x "${bin}/${name}" || ! -f "${bin}/.${name}.stamp" ||
			"$(cat "${bin}/.${name}.stamp")" != "$(stamp "${name}")" ]]; then
			echo "${name}"
		fi
	done
}

stamp() {
	if [[ "$1" == coredns ]]; then
		# It runs in a pod whose image holds nothing else: static.
		echo "github.com/coredns/coredns@$(cd "${here}/coredns" && go list -m -f '{{.Version}}' github.com/coredns/coredns) ${goversion} static"
	else
		echo "k8s.io/kubernetes@${kube_version} ${goversion}"
	fi
}

kube=()
others=()
for name in "${want[@]}"; do
	case "${name}" in
	kube-apiserver | kube-controller-manager | kube-scheduler | kube-proxy | kubelet | kubectl) kube+=("${name}") ;;
	coredns) others+=("${name}") ;;
	*)
		echo "build.sh: unknown binary ${name}" >&2
		exit 1
		;;
	esac
done
kube_version="$(cd "${here}" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"

# The Kubernetes binaries are built by one go build invocation, which
# compiles their many shared packages once and in parallel, rather than one
# binary after another. -trimpath and no debug information keep the
# binaries small; the version ldflags let them report the release they were
# built from instead of v0.0.0-master.
mapfile -t todo < <(stale "${kube[@]}")
if [[ ${#todo[@]} -gt 0 ]]; then
	start=$(date +%s)
	echo "building ${todo[*]} (k8s.io/kubernetes@${kube_version})" >&2
	p="k8s.io/component-base/version"
	ldflags="-s -w -X ${p}.gitVersion=${kube_version} -X ${p}.gitMajor=1"
	ldflags+=" -X ${p}.gitMinor=$(echo "${kube_version}" | cut -d. -f2)"
	tmp="$(mktemp -d "${bin}/.build.XXXXXX")"
	trap 'rm -rf "${tmp}"' EXIT
	pkgs=()
	for name in "${todo[@]}"; do
		pkgs+=("k8s.io/kubernetes/cmd/${name}")
	done
	(cd "${here}" && go build -trimpath -ldflags "${ldflags}" -o "${tmp}/" "${pkgs[@]}")
	for name in "${todo[@]}"; do
		mv "${tmp}/${name}" "${bin}/${name}"
		stamp "${name}" >"${bin}/.${name}.stamp"
	done
	echo "built ${todo[*]} in $(($(date +%s) - start))s" >&2
fi

mapfile -t todo < <(stale "${others[@]}")
for name in "${todo[@]}"; do
	start=$(date +%s)
	echo "building ${name}" >&2
	(cd "${here}/coredns" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${bin}/${name}.tmp" .)
	mv "${bin}/${name}.tmp" "${bin}/${name}"
	stamp "${name}" >"${bin}/.${name}.stamp"
	echo "built ${name} in $(($(date +%s) - start))s" >&2
done
echo "${bin}"
