#!/usr/bin/env bash
# Build Helm 3 and Helm 4 into target/go-bin/helm3 and target/go-bin/helm4 (the chart
# is tested with both) and print their paths on stdout, one per line.
#
#   tests/tools/helm.sh          build what is not up to date
#   tests/tools/helm.sh --force  rebuild (the go command still reuses its cache)
#
# `go install PKG@VERSION` builds each release from the Go module proxy, with its own
# module graph, into the project's target/ directory; nothing is downloaded from
# anywhere else. Caches are Go's defaults under $HOME, so a fresh clone on a machine
# that built them before only relinks.
set -euo pipefail

log_prefix=helm
# shellcheck source=tests/tools/go-tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-tools.sh"
export CGO_ENABLED=0
parse_force "${BASH_SOURCE[0]}" 2,5p "$@"

# name  module-path  version
tools=(
  "helm3 helm.sh/helm/v3 v3.22.0"
  "helm4 helm.sh/helm/v4 v4.3.1"
)

# Up to date when newer than this script, which holds the versions and flags.
up_to_date() {
  newer_than_all "$1" "${BASH_SOURCE[0]}"
}

mkdir -p "$bindir"
for tool in "${tools[@]}"; do
  read -r name module version <<<"$tool"
  bin="$bindir/$name"
  if ((!force)) && up_to_date "$bin"; then
    echo "$bin"
    continue
  fi
  command -v go >/dev/null 2>&1 || die "Go >= 1.26 is needed to build $name (no go command found)"
  # Release builds stamp the version; without it `helm version` prints only v3.22.
  ldflags="-s -w -X $module/internal/version.version=$version"
  # go install names both binaries "helm": install into a scratch GOBIN, then rename.
  scratch=$(mktemp -d "$bindir/.$name.XXXXXX")
  trap 'rm -rf "$scratch"' EXIT
  started=$(date +%s)
  log "building $name ($module $version; a few minutes the first time) ..."
  GOBIN=$scratch go install -trimpath -ldflags "$ldflags" "$module/cmd/helm@$version"
  mv -f "$scratch/helm" "$bin"
  rm -rf "$scratch"
  trap - EXIT
  touch "$bin"
  log "$name build time: $(($(date +%s) - started))s"
  echo "$bin"
done
