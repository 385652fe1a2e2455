#!/usr/bin/env bash
# Build the GitOps health checkers from tests/gitops into target/go-bin and print their
# paths on stdout, one per line:
#   kstatus     Flux's health library (sigs.k8s.io/cli-utils pkg/kstatus/status)
#   argocd-lua  Argo CD's Lua interpreter (github.com/yuin/gopher-lua), set up as Argo CD does
#
#   tests/tools/gitops.sh          build unless up to date
#   tests/tools/gitops.sh --force  rebuild (the go command still reuses its cache)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
module="$root/tests/gitops"
bindir="$root/target/go-bin"

export GOTOOLCHAIN=local
export GOFLAGS=-buildvcs=false
export CGO_ENABLED=0

log() { echo "gitops: $*" >&2; }
die() {
  log "$*"
  exit 1
}

force=0
case ${1:-} in
"") ;;
--force) force=1 ;;
*)
  sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac

# Up to date when newer than every input: the module files, the program and this script.
up_to_date() {
  local bin=$1 src=$2 f
  [[ -x $bin ]] || return 1
  for f in "$module/go.mod" "$module/go.sum" "${BASH_SOURCE[0]}" "$src"/*.go; do
    [[ $bin -nt $f ]] || return 1
  done
}

mkdir -p "$bindir"
for name in kstatus argocd-lua; do
  bin="$bindir/$name"
  src="$module/cmd/$name"
  if ((!force)) && up_to_date "$bin" "$src"; then
    echo "$bin"
    continue
  fi
  command -v go >/dev/null 2>&1 || die "Go >= 1.26 is needed to build $name (no go command found)"
  started=$(date +%s)
  log "building $name ..."
  (cd "$module" && go build -mod=readonly -trimpath -ldflags "-s -w" -o "$bin" "./cmd/$name")
  touch "$bin"
  log "$name build time: $(($(date +%s) - started))s"
  echo "$bin"
done
