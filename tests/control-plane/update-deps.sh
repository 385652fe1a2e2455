#!/usr/bin/env bash
# Move the local control plane to another Kubernetes patch release:
#   tests/control-plane/update-deps.sh v1.36.4
#
# k8s.io/kubernetes requires every staging module at v0.0.0 and redirects it to
# ./staging/src/..., which only resolves inside its own repository. We mirror each
# of those replace lines onto the published v0.X.Y tag; a missing one fails the
# build with "k8s.io/NAME@v0.0.0: invalid version". Only the Go module proxy is used.
set -euo pipefail

if [[ $# -ne 1 || ! $1 =~ ^v1\.([0-9]+)\.([0-9]+)$ ]]; then
  echo "usage: $0 v1.MINOR.PATCH" >&2
  exit 2
fi
k8s_version=$1
staging_version="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"

cd "$(dirname "${BASH_SOURCE[0]}")"
# Never let the go command fetch a newer toolchain behind our back: a module that
# needs one must fail here, loudly.
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

gomod=$(go mod download -json "k8s.io/kubernetes@${k8s_version}" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
if [[ -z $gomod || ! -f $gomod ]]; then
  echo "could not download k8s.io/kubernetes@${k8s_version}" >&2
  exit 1
fi

staging=$(sed -n 's/^[[:space:]]*\(k8s\.io\/[^[:space:]]*\) => \.\/staging\/src\/.*$/\1/p' "$gomod")
if [[ -z $staging ]]; then
  echo "no staging replace lines found in $gomod" >&2
  exit 1
fi

# -replace rewrites an existing line in place, keeping the block stable; only a
# module that upstream no longer has as staging is dropped.
current=$(go mod edit -json | awk '/"Replace": \[/ { inside = 1 } inside && /"Path": "k8s\.io\// { gsub(/[",]/, "", $2); print $2 }' | sort -u)
for old in $current; do
  if ! grep -qx "$old" <<<"$staging"; then
    go mod edit -dropreplace="$old"
  fi
done

count=0
for name in $staging; do
  go mod edit -replace="${name}=${name}@${staging_version}"
  count=$((count + 1))
done
echo "replace lines: ${count} staging modules at ${staging_version}"

go get "k8s.io/kubernetes@${k8s_version}" \
  "k8s.io/apiserver@${staging_version}" \
  "k8s.io/apimachinery@${staging_version}" \
  "k8s.io/client-go@${staging_version}" \
  "k8s.io/component-base@${staging_version}"

# Pin etcd to exactly what this apiserver was released against, so tidy never
# floats to a newer etcd minor.
# (awk reads to the end: exiting early would SIGPIPE go mod graph under pipefail.)
etcd_version=$(go mod graph | awk -v from="k8s.io/apiserver@${staging_version}" \
  '$1 == from && $2 ~ /^go\.etcd\.io\/etcd\/client\/v3@/ && !found { sub(/.*@/, "", $2); found = $2 }
   END { print found }')
if [[ -z $etcd_version ]]; then
  echo "could not find the etcd version required by k8s.io/apiserver@${staging_version}" >&2
  exit 1
fi
go get "go.etcd.io/etcd/server/v3@${etcd_version}" "go.etcd.io/etcd/client/v3@${etcd_version}"
go mod tidy
echo "etcd pinned to ${etcd_version}"

installed=$(go env GOVERSION)
required=$(go mod edit -json | sed -n 's/^[[:space:]]*"Go": "\(.*\)",*$/\1/p' | head -n1)
echo "go directive: ${required} (installed: ${installed})"
echo "now build and test (tests/control-plane/run.sh build), then commit go.mod and go.sum together"
