#!/usr/bin/env bash
# run.sh is Strait's end-to-end suite on real Kubernetes: three kind
# clusters, east, west and central, federated through one etcd.
#
#   1. builds the images (deploy/Dockerfile, deploy/etcd/Dockerfile) and
#      creates the kind clusters strait-east, strait-west and strait-central,
#      loading the images into each;
#   2. installs Strait with deploy/install.sh, the install path that
#      e2e/kubenode's TestFederation (make e2e-kube) runs too: etcd (3
#      members) and Strait in east, then Strait in west and central pointed
#      at east's etcd NodePort; install.sh waits for the rollouts and checks
#      that every gateway is in etcd with its node's address;
#   3. deploys the demo service hello in west and central with their
#      ServiceExports, and a client in east (deploy/examples/);
#   4. checks: the ServiceExport is Valid and Ready, east gets the
#      ServiceImport and its derived Service and EndpointSlice, and the
#      client reaches hello in west (east prefers west, then central:
#      overlays/east/failover.yaml) through both gateways;
#   5. failover: hello also runs in east; the client is served locally;
#      scaling east's hello to zero while requests run moves them to west
#      without a failed request;
#   6. deletes the clusters (KEEP=1 keeps them for debugging).
#
# Needs docker (or podman with KIND_EXPERIMENTAL_PROVIDER), kind, kubectl
# and openssl.
#
# Usage: e2e/kind/run.sh
#   KEEP=1          keep the clusters at the end
#   IMAGE=strait:dev image name (the manifests use strait:dev)
#   SKIP_BUILD=1    use an image already built
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
image="${IMAGE:-strait:dev}"
etcd_image="strait-etcd:v3.7.3" # deploy/etcd/etcd.yaml
clusters=(east west central)
timeout=300 # seconds for each wait

log() { printf '%s [kind-e2e] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
	log "FAIL: $*"
	exit 1
}

need() {
	local tool
	for tool in "$@"; do
		command -v "${tool}" >/dev/null 2>&1 || die "${tool} is required"
	done
}

ctx() { echo "kind-strait-$1"; }
kc() {
	local cluster="$1"
	shift
	kubectl --context "$(ctx "${cluster}")" "$@"
}

# until_ok runs a command until it succeeds or the timeout passes.
until_ok() {
	local what="$1"
	shift
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS > deadline)); then
			log "last attempt of: $*"
			"$@" || true
			die "${what}: not within ${timeout}s"
		fi
		sleep 2
	done
	log "ok: ${what}"
}

cleanup() {
	local rc=$?
	if [[ ${rc} -ne 0 ]]; then
		for c in "${clusters[@]}"; do
			kc "${c}" get pods -A -o wide 2>/dev/null || true
			kc "${c}" -n strait-system logs deploy/strait-gateway --all-containers --tail=50 2>/dev/null || true
		done
	fi
	if [[ "${KEEP:-0}" == 1 ]]; then
		log "keeping the clusters (KEEP=1)"
		return
	fi
	for c in "${clusters[@]}"; do
		kind delete cluster --name "strait-${c}" >/dev/null 2>&1 || true
	done
}

node_ip() {
	docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "strait-$1-control-plane"
}

setup() {
	if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
		log "building ${image}"
		docker build -f "${repo}/deploy/Dockerfile" -t "${image}" "${repo}"
		docker build -f "${repo}/deploy/etcd/Dockerfile" -t "${etcd_image}" "${repo}"
	fi
	for c in "${clusters[@]}"; do
		if ! kind get clusters 2>/dev/null | grep -qx "strait-${c}"; then
			log "creating kind cluster strait-${c}"
			kind create cluster --name "strait-${c}" --wait 120s
		fi
		kind load docker-image "${image}" "${etcd_image}" --name "strait-${c}"
	done
}

install() {
	local east_ip c
	east_ip="$(node_ip east)"
	[[ -n "${east_ip}" ]] || die "no IP for the east node"
	# deploy/install.sh: the steps deploy/README.md gives users, and checks.
	TIMEOUT="${timeout}" "${repo}/deploy/install.sh" east --context "$(ctx east)"
	for c in west central; do
		ETCD_NODE_IP="${east_ip}" TIMEOUT="${timeout}" "${repo}/deploy/install.sh" "${c}" --context "$(ctx "${c}")"
	done
}

deploy_demo() {
	local east_ip c
	east_ip="$(node_ip east)"
	log "deploying hello in west and central and the client in east"
	for c in west central; do
		sed "s/EAST_NODE_IP/${east_ip}/g" "${repo}/deploy/examples/${c}-hello.yaml" |
			kc "${c}" apply --server-side -f -
	done
	kc east apply --server-side -f "${repo}/deploy/examples/east-client.yaml"
	kc west -n demo rollout status deploy/hello --timeout "${timeout}s"
	kc central -n demo rollout status deploy/hello --timeout "${timeout}s"
	kc east -n demo rollout status deploy/client --timeout "${timeout}s"
}

curl_hello() {
	kc east -n demo exec deploy/client -c curl -- \
		curl -sS --max-time 5 http://127.0.0.1:18080/
}

check_cross_cluster() {
	until_ok "ServiceExport hello Valid in west" \
		kc west -n demo wait --for=condition=Valid serviceexport/hello --timeout 5s
	until_ok "ServiceExport hello Ready in west" \
		kc west -n demo wait --for=condition=Ready serviceexport/hello --timeout 5s
	until_ok "ServiceImport hello in east" kc east -n demo get serviceimport/hello
	until_ok "derived Service in east" kc east -n demo get service/derived-hello
	until_ok "derived EndpointSlice in east" bash -c \
		"kubectl --context $(ctx east) -n demo get endpointslices -l multicluster.kubernetes.io/service-name=hello -o name | grep -q ."
	until_ok "east client reaches hello in west" bash -c \
		"kubectl --context $(ctx east) -n demo exec deploy/client -c curl -- curl -sS --max-time 5 http://127.0.0.1:18080/ | grep -q 'cluster west'"
	local out
	out="$(curl_hello)"
	log "answer: ${out}"
	[[ "${out}" == *"spiffe://east.strait.local/ns/demo/sa/client"* ]] ||
		die "the destination did not see the caller's SPIFFE ID: ${out}"
	kc east -n demo get serviceimport/hello -o yaml
}

check_failover() {
	local east_ip
	east_ip="$(node_ip east)"
	log "failover: hello runs in east too"
	sed -e "s/EAST_NODE_IP/${east_ip}/g" -e 's/"west"/"east"/g' \
		-e 's/cluster: west/cluster: east/' -e 's/west.strait.local/east.strait.local/' \
		-e 's|spiffe://east.strait.local"|spiffe://west.strait.local"|' \
		"${repo}/deploy/examples/west-hello.yaml" |
		sed "s|http://${east_ip}:32379|http://strait-etcd-client.strait-system.svc.cluster.local:2379|" |
		kc east apply --server-side -f -
	kc east -n demo rollout status deploy/hello --timeout "${timeout}s"
	until_ok "east client served locally" bash -c \
		"kubectl --context $(ctx east) -n demo exec deploy/client -c curl -- curl -sS --max-time 5 http://127.0.0.1:18080/ | grep -q 'cluster east'"

	log "scaling hello in east to zero while requests run"
	local results
	results="$(mktemp)"
	# The loop runs in the curl container: its $(...) must not expand here.
	# shellcheck disable=SC2016
	kc east -n demo exec deploy/client -c curl -- sh -c \
		'for i in $(seq 1 150); do curl -s -o /dev/null -w "%{http_code}\n" --max-time 5 http://127.0.0.1:18080/ || echo 000; sleep 0.1; done' \
		>"${results}" &
	local load=$!
	sleep 3
	kc east -n demo scale deploy/hello --replicas 0
	wait "${load}"
	local total failed
	total="$(wc -l <"${results}")"
	failed="$(grep -vc '^200$' "${results}" || true)"
	rm -f "${results}"
	log "failover: ${total} requests, ${failed} failed"
	[[ "${total}" -ge 150 ]] || die "only ${total} requests ran"
	[[ "${failed}" -eq 0 ]] || die "${failed} requests failed during failover"
	until_ok "east client served by west after failover" bash -c \
		"kubectl --context $(ctx east) -n demo exec deploy/client -c curl -- curl -sS --max-time 5 http://127.0.0.1:18080/ | grep -q 'cluster west'"
}

check_withdraw() {
	log "withdrawing the exports"
	kc west -n demo delete serviceexport/hello --timeout "${timeout}s"
	kc central -n demo delete serviceexport/hello --timeout "${timeout}s"
	kc east -n demo delete serviceexport/hello --timeout "${timeout}s" --ignore-not-found
	until_ok "ServiceImport hello gone from east" bash -c \
		"! kubectl --context $(ctx east) -n demo get serviceimport/hello"
}

main() {
	need docker kind kubectl
	trap cleanup EXIT
	setup
	install
	deploy_demo
	check_cross_cluster
	check_failover
	check_withdraw
	log "PASS"
}

main "$@"
