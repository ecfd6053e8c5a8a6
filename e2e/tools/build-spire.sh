#!/usr/bin/env bash
# build-spire.sh builds the SPIRE server and agent pinned in e2e/tools/go.mod
# into e2e/tools/bin (gitignored) and reuses them on later runs.
#
# Usage: e2e/tools/build-spire.sh [-f]
#   -f  rebuild even when the binaries exist (the Go build cache keeps a
#       rebuild short; the first build takes about 6 minutes on 2 cores).
#
# It prints the directory holding the binaries on success, so callers can do
#   STRAIT_SPIRE_BIN=$(e2e/tools/build-spire.sh) go test ./e2e/spire/...
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${here}/bin"
force=0
[[ "${1:-}" == "-f" ]] && force=1

# The version pinned in go.mod; a stamp file records what bin/ was built from.
version="$(cd "${here}" && go list -m -f '{{.Version}}' github.com/spiffe/spire)"
stamp="${bin}/.spire-version"

if [[ ${force} -eq 0 && -x "${bin}/spire-server" && -x "${bin}/spire-agent" \
	&& -f "${stamp}" && "$(cat "${stamp}")" == "${version}" ]]; then
	echo "${bin}"
	exit 0
fi

mkdir -p "${bin}"
start=$(date +%s)
echo "building spire-server and spire-agent ${version} into ${bin}" >&2
(cd "${here}" && go build -trimpath -o "${bin}/" \
	github.com/spiffe/spire/cmd/spire-server \
	github.com/spiffe/spire/cmd/spire-agent)
echo "${version}" >"${stamp}"
echo "built in $(($(date +%s) - start))s" >&2
echo "${bin}"
