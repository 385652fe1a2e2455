# Sourced by the tool builders in this directory (kubectl.sh, helm.sh, gitops.sh): where
# tools go, the go command's settings, logging, the --force flag and the up-to-date
# check. The caller sets `log_prefix` before sourcing.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bindir="$root/target/go-bin"

# Same settings as tests/control-plane/run.sh: never fetch a toolchain, and no VCS
# stamping (a fresh clone's dirty state would change the binary).
export GOTOOLCHAIN=local
export GOFLAGS=-buildvcs=false

log() { echo "$log_prefix: $*" >&2; }
die() {
  log "$*"
  exit 1
}

# parse_force SCRIPT LINES [ARG]: force=1 for --force, 0 without an argument; anything
# else prints LINES (a sed range such as 2,5p) of SCRIPT's header and exits 2.
parse_force() {
  local script=$1 lines=$2
  force=0
  case ${3:-} in
  "") ;;
  --force) force=1 ;;
  *)
    sed -n "$lines" "$script" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
  esac
}

# newer_than_all BIN FILE...: BIN is executable and newer than every FILE (and than
# this file, which holds the shared build settings). Comparing mtimes costs nothing,
# whereas even a no-op `go build` takes seconds.
newer_than_all() {
  local bin=$1 f
  shift
  [[ -x $bin ]] || return 1
  for f in "$@" "${BASH_SOURCE[0]}"; do
    [[ $bin -nt $f ]] || return 1
  done
}
