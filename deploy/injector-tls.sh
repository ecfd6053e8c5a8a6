#!/usr/bin/env bash
# injector-tls.sh gives the sidecar injector (base/injector.yaml) its serving
# certificate: it makes a CA and a certificate for
# strait-injector.strait-system.svc with openssl, stores them as the Secret
# strait-system/strait-injector-tls (kubernetes.io/tls), and writes the CA
# into the caBundle of both webhooks of the MutatingWebhookConfiguration
# strait-injector, which the API server then trusts. Run it once per
# cluster after installing deploy/ (again to renew: the injector reloads the
# Secret's files). The arguments are passed to every kubectl call:
#
#   deploy/injector-tls.sh --context east
#
# With cert-manager, issue the Secret from a Certificate instead and
# annotate the MutatingWebhookConfiguration with
# cert-manager.io/inject-ca-from: strait-system/<certificate>.
set -euo pipefail

dir="$(mktemp -d)"
trap 'rm -rf "${dir}"' EXIT
svc=strait-injector.strait-system.svc
days="${DAYS:-365}"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	-days "${days}" -subj "/CN=strait-injector CA" \
	-keyout "${dir}/ca.key" -out "${dir}/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	-subj "/CN=${svc}" -keyout "${dir}/tls.key" -out "${dir}/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:%s.cluster.local\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n' \
	"${svc}" "${svc}" >"${dir}/ext"
openssl x509 -req -in "${dir}/tls.csr" -CA "${dir}/ca.crt" -CAkey "${dir}/ca.key" \
	-CAcreateserial -days "${days}" -extfile "${dir}/ext" -out "${dir}/tls.crt" 2>/dev/null

kubectl "$@" -n strait-system create secret tls strait-injector-tls \
	--cert "${dir}/tls.crt" --key "${dir}/tls.key" --dry-run=client -o yaml |
	kubectl "$@" apply -f -
ca="$(base64 -w0 <"${dir}/ca.crt")"
kubectl "$@" patch mutatingwebhookconfiguration strait-injector --type json -p \
	"[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"${ca}\"},{\"op\":\"add\",\"path\":\"/webhooks/1/clientConfig/caBundle\",\"value\":\"${ca}\"}]"
echo "strait-injector: certificate for ${svc} in secret strait-system/strait-injector-tls, CA in the webhooks' caBundle"
