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

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
module="$root/tests/control-plane"
bin="$root/target/go-bin/kubectl"

# Same settings as tests/control-plane/run.sh: never fetch a toolchain, and no VCS
# stamping (a fresh clone's dirty state would change the binary).
export GOTOOLCHAIN=local
export GOFLAGS=-buildvcs=false

log() { echo "kubectl: $*" >&2; }
die() {
  log "$*"
  exit 1
}

force=0
case ${1:-} in
"") ;;
--force) force=1 ;;
*)
  sed -n '2,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac

# Up to date when newer than everything that decides its contents: the module files
# (the Kubernetes version) and this script (the flags). Checking mtimes costs nothing,
# whereas even a no-op `go build` of kubectl takes several seconds.
up_to_date() {
  local f
  [[ -x $bin ]] || return 1
  for f in "$module/go.mod" "$module/go.sum" "${BASH_SOURCE[0]}"; do
    [[ $bin -nt $f ]] || return 1
  done
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
