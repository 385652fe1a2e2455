#!/usr/bin/env bash
# Build a kubectl that matches the local control plane into target/go-bin/kubectl and
# print its path on stdout.
#
#   tests/tools/kubectl.sh          build unless up to date
#   tests/tools/kubectl.sh --force  rebuild (the go command still reuses its cache)
#
# kubectl comes from the control-plane Go module (`tool k8s.io/kubernetes/cmd/kubectl`
# in tests/control-plane/go.mod), so it is exactly the control plane's Kubernetes
# version: a kubectl from elsewhere is often outside the ±1 minor version-skew policy,
# and machines without internet access cannot download one anyway.
set -euo pipefail

log_prefix=kubectl
# shellcheck source=tests/tools/go-tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-tools.sh"
module="$root/tests/control-plane"
bin="$bindir/kubectl"
parse_force "${BASH_SOURCE[0]}" 2,5p "$@"

# Up to date when newer than everything that decides its contents: the module files
# (the Kubernetes version) and this script (the flags).
up_to_date() {
  newer_than_all "$bin" "$module/go.mod" "$module/go.sum" "${BASH_SOURCE[0]}"
}

if ((!force)) && up_to_date; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "Go >= 1.26 is needed to build kubectl (no go command found)"
grep -q '^tool k8s.io/kubernetes/cmd/kubectl$' "$module/go.mod" ||
  die "tests/control-plane/go.mod has no 'tool k8s.io/kubernetes/cmd/kubectl' line"

version=$(sed -n 's/^[[:space:]]*k8s\.io\/kubernetes \(v[0-9.]*\).*$/\1/p' "$module/go.mod" | head -n1)
[[ $version =~ ^v([0-9]+)\.([0-9]+)\. ]] || die "cannot read the k8s.io/kubernetes version from go.mod"
major=${BASH_REMATCH[1]}
minor=${BASH_REMATCH[2]}
# The version stamping of tests/control-plane/run.sh, so that `kubectl version` reports
# the real release (without it kubectl says v0.0.0-master and warns about skew). The
# constant build date keeps an unchanged tree from relinking.
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

mkdir -p "$(dirname "$bin")"
started=$(date +%s)
log "building kubectl $version (a few minutes the first time) ..."
(cd "$module" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "$ldflags -s -w" \
  -o "$bin" k8s.io/kubernetes/cmd/kubectl)
# go build keeps the old file when nothing changed; touch it so the mtime check holds.
touch "$bin"
log "build time: $(($(date +%s) - started))s"
echo "$bin"
