#!/usr/bin/env bash
# build-spire.sh builds the SPIRE server and agent pinned in
# e2e/tools/spire/go.mod into e2e/tools/bin (gitignored) and reuses them on
# later runs.
#
# SPIRE has its own tools module because SPIRE v1.13.3 compiles only against
# go-spiffe v2.6.0, while the etcd tools of e2e/tools/go.mod need a newer
# grpc, which needs go-spiffe v2.7.0 (whose Workload API interface SPIRE's
# agent does not implement). One module cannot hold both.
#
# Usage: e2e/tools/build-spire.sh [-f]
#   -f  rebuild even when the binaries are current (the Go build cache keeps
#       a rebuild short; the first build takes about 6 minutes on 2 cores).
#
# It prints the directory holding the binaries on success, so callers can do
#   STRAIT_SPIRE_BIN=$(e2e/tools/build-spire.sh) go test ./e2e/spire/...
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="${here}/spire"
bin="${here}/bin"
force=0
[[ "${1:-}" == "-f" ]] && force=1

# What bin/ was built from: the pinned SPIRE version, go.sum (every
# dependency) and the Go version.
stamp_want="$(cd "${mod}" && go list -m -f '{{.Version}}' github.com/spiffe/spire) $(sha256sum "${mod}/go.sum" | cut -c1-16) $(go env GOVERSION)"
stamp="${bin}/.spire-version"

if [[ ${force} -eq 0 && -x "${bin}/spire-server" && -x "${bin}/spire-agent" \
	&& -f "${stamp}" && "$(cat "${stamp}")" == "${stamp_want}" ]]; then
	echo "${bin}"
	exit 0
fi

mkdir -p "${bin}"
start=$(date +%s)
echo "building spire-server and spire-agent (${stamp_want}) into ${bin}" >&2
# Build into a temporary directory and move both binaries at the end, so a
# failed build never leaves a mixed pair behind.
tmp="$(mktemp -d "${bin}/.build-XXXXXX")"
trap 'rm -rf "${tmp}"' EXIT
(cd "${mod}" && go build -trimpath -o "${tmp}/" \
	github.com/spiffe/spire/cmd/spire-server \
	github.com/spiffe/spire/cmd/spire-agent)
mv -f "${tmp}/spire-server" "${tmp}/spire-agent" "${bin}/"
echo "${stamp_want}" >"${stamp}"
echo "built in $(($(date +%s) - start))s" >&2
echo "${bin}"
