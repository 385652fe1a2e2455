#!/usr/bin/env bash
# Local Kubernetes control plane (embedded etcd + in-process kube-apiserver) for
# integration tests and demos.
#
#   run.sh [run] [--] CMD ARGS...  build, start, run CMD with KUBECONFIG and
#                                  CONTROL_PLANE_KUBECONFIG set, stop; exit with CMD's code
#   run.sh build                   build target/control-plane/control-plane only
#   run.sh start                   build and start detached (state in target/control-plane/state)
#   run.sh stop                    stop the detached instance and remove its state
#   run.sh status                  say whether the detached instance is up (exit 0) or not (1)
#
# Environment: CONTROL_PLANE_START_TIMEOUT (seconds, default 180),
# CONTROL_PLANE_KEEP=1 (keep the run directory), CONTROL_PLANE_VERBOSITY (apiserver --v),
# CONTROL_PLANE_APISERVER_ARGS (extra kube-apiserver flags).
#
# CMD runs in the foreground so that it keeps the terminal: Ctrl-C reaches it, and
# the control plane is stopped once it has exited. A SIGTERM sent to this script
# alone also waits for CMD; if the script is killed outright, the control plane
# notices that its parent is gone and stops by itself.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/target/control-plane"
bin="$out/control-plane"
state="$out/state"
start_timeout=${CONTROL_PLANE_START_TIMEOUT:-180}

# Caches stay at the go command's defaults under $HOME: CI works in a fresh clone on
# the same machine, so anything kept in the work tree would be rebuilt every run.
export GOTOOLCHAIN=local
export GOFLAGS=-buildvcs=false

log() { echo "control-plane: $*" >&2; }
die() {
  log "$*"
  exit 1
}

usage() {
  sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

check_go() {
  command -v go >/dev/null 2>&1 || die "Go >= 1.26 is required for tests/control-plane (no go command found)"
  local version major minor
  version=$(go env GOVERSION)
  if [[ $version =~ ^go([0-9]+)\.([0-9]+) ]]; then
    major=${BASH_REMATCH[1]}
    minor=${BASH_REMATCH[2]}
  else
    die "Go >= 1.26 is required for tests/control-plane (cannot parse '$version')"
  fi
  if ((major < 1 || (major == 1 && minor < 26))); then
    die "Go >= 1.26 is required for tests/control-plane (found $version)"
  fi
}

# free_mb PATH: free space of the filesystem holding PATH or its nearest existing parent.
free_mb() {
  local path=$1
  while [[ ! -e $path ]]; do path=$(dirname "$path"); done
  df -Pm "$path" | awk 'NR == 2 { print $4 }'
}

check_disk() {
  local modcache gocache need_mb dir free
  modcache=$(go env GOMODCACHE)
  gocache=$(go env GOCACHE)
  # A cold build downloads and compiles all of Kubernetes; once the module is cached
  # only incremental space is needed.
  if [[ -d $modcache/k8s.io/kubernetes@$(k8s_version) ]]; then
    need_mb=1024
  else
    need_mb=5120
  fi
  for dir in "$modcache" "$gocache" "$out"; do
    free=$(free_mb "$dir")
    if ((free < need_mb)); then
      die "not enough disk space for $dir: ${free} MB free, about ${need_mb} MB needed (Go module and build caches)"
    fi
  done
}

k8s_version() {
  sed -n 's/^[[:space:]]*k8s\.io\/kubernetes \(v[0-9.]*\).*$/\1/p' "$here/go.mod" | head -n1
}

build() {
  check_go
  mkdir -p "$out"
  check_disk
  local version major minor ldflags="" pkg started elapsed
  version=$(k8s_version)
  [[ $version =~ ^v([0-9]+)\.([0-9]+)\. ]] || die "cannot read the k8s.io/kubernetes version from go.mod"
  major=${BASH_REMATCH[1]}
  minor=${BASH_REMATCH[2]}
  # /version must report a real release (Helm checks kubeVersion against it). The
  # build date is constant so that an unchanged tree does not relink.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  started=$(date +%s)
  log "building kube-apiserver $version + etcd (a cold build takes 10-30 minutes) ..."
  (cd "$here" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "$ldflags -s -w" -o "$bin" .)
  elapsed=$(($(date +%s) - started))
  log "build time: ${elapsed}s"
}

alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# stop_pid PID: one SIGTERM only (a second one makes the apiserver exit without
# cleanup), up to 30 s to drain, then SIGKILL.
stop_pid() {
  local pid=$1 i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 150; i++)); do
    alive "$pid" || return 0
    sleep 0.2
  done
  log "pid $pid did not stop within 30s, killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

show_logs() {
  local dir=$1 f lines
  # etcd first and shorter: the apiserver's log usually holds the cause.
  for f in etcd.log control-plane.log stdout; do
    lines=50
    [[ $f == etcd.log ]] && lines=10
    if [[ -s $dir/$f ]]; then
      echo "----- last $lines lines of $f -----" >&2
      tail -n "$lines" "$dir/$f" >&2
    fi
  done
}

# launch DIR [launcher flags...]: start the launcher in DIR and wait for READY.
# Sets $pid and $kubeconfig; returns 1 (logs shown) on failure, 2 on a port clash.
launch() {
  local dir=$1
  shift
  kubeconfig="$dir/kubeconfig"
  rm -f "$dir/stdout" "$dir/control-plane.log" "$kubeconfig"
  # setsid: its own process group, so a terminal's Ctrl-C reaches only us and the
  # launcher gets exactly one SIGTERM from stop_pid.
  setsid "$bin" --work-dir "$dir" --kubeconfig "$kubeconfig" "$@" \
    </dev/null >"$dir/stdout" 2>"$dir/control-plane.log" &
  pid=$!
  echo "$pid" >"$dir/pid"
  local started now
  started=$(date +%s)
  while :; do
    if grep -q '^READY ' "$dir/stdout" 2>/dev/null; then
      log "start time: $(($(date +%s) - started))s (pid $pid)"
      return 0
    fi
    if ! alive "$pid"; then
      wait "$pid" 2>/dev/null || true
      if grep -q 'address already in use' "$dir/control-plane.log" 2>/dev/null; then
        return 2
      fi
      log "the control plane exited during start-up"
      show_logs "$dir"
      return 1
    fi
    now=$(date +%s)
    if ((now - started >= start_timeout)); then
      log "not ready within ${start_timeout}s (raise CONTROL_PLANE_START_TIMEOUT on slow machines)"
      show_logs "$dir"
      stop_pid "$pid"
      return 1
    fi
    sleep 0.25
  done
}

# launch_with_retry DIR FLAGS...: free ports are picked before they are bound, so a
# concurrent process can steal one; a single retry makes that race harmless.
launch_with_retry() {
  local rc=0
  launch "$@" || rc=$?
  if ((rc == 2)); then
    log "port already in use, retrying once"
    rc=0
    launch "$@" || rc=$?
  fi
  if ((rc == 2)); then
    show_logs "$1"
  fi
  return "$rc"
}

probe_readyz() {
  # Optional: a kubectl outside the version-skew policy still handles raw calls.
  if command -v kubectl >/dev/null 2>&1; then
    if ! kubectl --kubeconfig "$1" get --raw /readyz >/dev/null 2>&1; then
      log "warning: kubectl get --raw /readyz failed"
    fi
  fi
}

# Globals so that the EXIT trap still sees them once cmd_run's frame is gone.
run_dir=""
pid=""
cleaned=0

cleanup_run() {
  ((cleaned)) && return 0
  cleaned=1
  if [[ -n $pid ]]; then stop_pid "$pid"; fi
  if [[ -z $run_dir ]]; then return 0; fi
  if [[ ${CONTROL_PLANE_KEEP:-} == 1 ]]; then
    log "keeping $run_dir"
  else
    rm -rf "$run_dir"
  fi
}

cmd_run() {
  [[ $# -gt 0 ]] || usage
  build
  trap 'rc=$?; cleanup_run; exit $rc' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  run_dir=$(mktemp -d "$out/run.XXXXXX")

  launch_with_retry "$run_dir" --exit-with-parent || exit 1
  probe_readyz "$kubeconfig"
  export KUBECONFIG="$kubeconfig"
  export CONTROL_PLANE_KUBECONFIG="$kubeconfig"
  # A child rather than exec, so that the trap stops the control plane afterwards.
  local rc=0
  "$@" || rc=$?
  exit "$rc"
}

state_pid() {
  if [[ -f $state/pid ]]; then cat "$state/pid"; fi
}

state_up() {
  local p
  p=$(state_pid)
  alive "$p" && grep -q '^READY ' "$state/stdout" 2>/dev/null
}

print_exports() {
  echo "export KUBECONFIG=$state/kubeconfig"
  echo "export CONTROL_PLANE_KUBECONFIG=$state/kubeconfig"
}

cmd_start() {
  if state_up; then
    log "already running (pid $(state_pid))"
    print_exports
    return 0
  fi
  build
  # A stale state directory (crash, reboot) would confuse the next status call.
  local p
  p=$(state_pid)
  [[ -n $p ]] && stop_pid "$p"
  rm -rf "$state"
  mkdir -p "$state"
  pid=""
  launch_with_retry "$state" || {
    [[ -n $pid ]] && stop_pid "$pid"
    exit 1
  }
  probe_readyz "$kubeconfig"
  print_exports
}

cmd_stop() {
  local p
  p=$(state_pid)
  if [[ -n $p ]]; then
    stop_pid "$p"
    log "stopped (pid $p)"
  else
    log "not running"
  fi
  rm -rf "$state"
}

cmd_status() {
  if state_up; then
    echo "running: pid $(state_pid), kubeconfig $state/kubeconfig"
    return 0
  fi
  echo "not running"
  return 1
}

case ${1:-} in
build)
  [[ $# -eq 1 ]] || usage
  build
  ;;
start)
  [[ $# -eq 1 ]] || usage
  cmd_start
  ;;
stop)
  [[ $# -eq 1 ]] || usage
  cmd_stop
  ;;
status)
  [[ $# -eq 1 ]] || usage
  cmd_status
  ;;
run)
  shift
  [[ ${1:-} == -- ]] && shift
  cmd_run "$@"
  ;;
--)
  shift
  cmd_run "$@"
  ;;
"" | -h | --help | help)
  usage
  ;;
*)
  cmd_run "$@"
  ;;
esac
