#!/usr/bin/env bash
# Build the GitOps health checkers from tests/gitops into target/go-bin and print their
# paths on stdout, one per line:
#   kstatus     Flux's health library (sigs.k8s.io/cli-utils pkg/kstatus/status)
#   argocd-lua  Argo CD's Lua interpreter (github.com/yuin/gopher-lua), set up as Argo CD does
#
#   tests/tools/gitops.sh          build unless up to date
#   tests/tools/gitops.sh --force  rebuild (the go command still reuses its cache)
set -euo pipefail

log_prefix=gitops
# shellcheck source=tests/tools/go-tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-tools.sh"
export CGO_ENABLED=0
module="$root/tests/gitops"
parse_force "${BASH_SOURCE[0]}" 2,8p "$@"

# Up to date when newer than every input: the module files, the program and this script.
up_to_date() {
  newer_than_all "$1" "$module/go.mod" "$module/go.sum" "${BASH_SOURCE[0]}" "$2"/*.go
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
