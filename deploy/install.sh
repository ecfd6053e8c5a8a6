#!/usr/bin/env bash
# install.sh installs Strait in one cluster exactly as deploy/README.md tells
# users to, then checks the install. e2e/kind/run.sh and e2e/kubenode's
# federation test (make e2e-kube) both install through it. The arguments
# after the cluster name are passed to every kubectl call:
#
#   deploy/install.sh east --context kind-strait-east
#   ETCD_NODE_IP=172.18.0.2 deploy/install.sh west --context kind-strait-west
#
# CLUSTER names deploy/overlays/CLUSTER. An overlay that includes ../../etcd
# (east) hosts the federation's etcd: it is applied as it is with
# `kubectl apply --server-side -k` and etcd's StatefulSet is waited for. Any
# other overlay points at that etcd's client NodePort (32379) on an address
# of the etcd cluster's node: `kubectl kustomize` with EAST_NODE_IP replaced
# by ETCD_NODE_IP (required for those), applied with --server-side. Then, in
# every cluster: deploy/injector-tls.sh (the injector's certificate), the
# rollouts of the injector and the gateways, the Job that writes the
# cluster's live configuration to etcd when the overlay has one, and the
# checks: every running gateway pod is registered in etcd (`strait status`,
# run in a gateway pod) with the QUIC ingress address <its node's IP>:30443,
# the NodePort other clusters dial.
#
# Environment: ETCD_NODE_IP (see above), TIMEOUT (seconds for each wait,
# default 300). kubectl and openssl must be on PATH.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
timeout="${TIMEOUT:-300}"

log() { printf '%s [install] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
	log "FAIL: $*"
	exit 1
}

[[ $# -ge 1 ]] || die "usage: deploy/install.sh CLUSTER [kubectl flags...]"
cluster="$1"
shift
overlay="${repo}/deploy/overlays/${cluster}"
[[ -f "${overlay}/kustomization.yaml" ]] || die "no overlay ${overlay}"
kc() { kubectl "$@"; }
if [[ $# -gt 0 ]]; then
	flags=("$@")
	kc() { kubectl "${flags[@]}" "$@"; }
fi

apply_overlay() {
	if grep -q '\.\./\.\./etcd' "${overlay}/kustomization.yaml"; then
		log "${cluster}: applying ${overlay} (with the federation's etcd)"
		kc apply --server-side -k "${overlay}"
		kc -n strait-system rollout status statefulset/strait-etcd --timeout "${timeout}s"
		return
	fi
	[[ -n "${ETCD_NODE_IP:-}" ]] || die "${cluster}: ETCD_NODE_IP (an address of the etcd cluster's node) is required"
	log "${cluster}: applying ${overlay} (etcd at ${ETCD_NODE_IP}:32379)"
	kc kustomize "${overlay}" | sed "s/EAST_NODE_IP/${ETCD_NODE_IP}/g" | kc apply --server-side -f -
}

wait_rollouts() {
	"${repo}/deploy/injector-tls.sh" "$@"
	kc -n strait-system rollout status deploy/strait-injector --timeout "${timeout}s"
	kc -n strait-system rollout status deploy/strait-gateway --timeout "${timeout}s"
	if kc -n strait-system get job/strait-live-config >/dev/null 2>&1; then
		kc -n strait-system wait --for=condition=complete job/strait-live-config --timeout "${timeout}s"
		log "${cluster}: live configuration written to etcd"
	fi
}

# check_gateways passes when every running gateway pod of the cluster is in
# etcd with the ingress address <its node's IP>:30443.
check_gateways() {
	local etcd pods status pod ip
	etcd="$(kc -n strait-system get configmap strait-federation -o jsonpath='{.data.etcdEndpoint}')"
	pods="$(kc -n strait-system get pods -l app.kubernetes.io/name=strait-gateway --field-selector status.phase=Running \
		-o jsonpath='{range .items[*]}{.metadata.name} {.status.hostIP} {.metadata.deletionTimestamp}{"\n"}{end}')"
	status="$(kc -n strait-system exec deploy/strait-gateway -c gateway -- strait status --etcd "${etcd}")" || return 1
	[[ -n "${pods}" ]] || return 1
	while read -r pod ip deleting; do
		[[ -z "${deleting:-}" ]] || continue
		grep -Eq "^${cluster}[[:space:]].*[[:space:]]${pod}[[:space:]]+${ip}:30443[[:space:]]" <<<"${status}" || {
			log "${cluster}: gateway ${pod} not in etcd at ${ip}:30443 yet"
			return 1
		}
	done <<<"${pods}"
	log "${cluster}: gateways in etcd:"
	grep -E "^${cluster}[[:space:]]" <<<"${status}" >&2
}

main() {
	apply_overlay
	wait_rollouts "$@"
	local deadline=$((SECONDS + timeout))
	until check_gateways; do
		((SECONDS < deadline)) || die "${cluster}: the gateways did not register in etcd within ${timeout}s"
		sleep 2
	done
	log "${cluster}: installed"
}

main "$@"
