#!/usr/bin/env bash
# make demo: the operator end to end on one machine, until Ctrl-C.
#
#   tests/demo/demo.sh                    local control plane (tests/control-plane)
#   CLUSTER=existing tests/demo/demo.sh   the cluster of the current KUBECONFIG
#
# Builds the operator and the fake Confluence (debug), a version-matched kubectl, starts
# the fake (medium preset) and, unless CLUSTER=existing, the local control plane;
# applies the CRDs, a namespace `demo`, a Secret and a connector; runs the operator
# against them, shows `kubectl get cfc -o wide` whenever it changes and the snapshot
# summary once the connector is Connected. Ctrl-C stops everything it started.
#
# Environment: CLUSTER (local|existing), DEMO_NAMESPACE (demo), DEMO_HTTP_PORT (8080, a
# free port if taken), DEMO_TIMEOUT (seconds until Connected, default 900),
# DEMO_PROFILE (debug|release, default debug), KUBECTL (a kubectl to use instead of
# building one), DEMO_EXIT_WHEN_CONNECTED=1 (stop once Connected: for scripted checks).
# Files: target/demo/{operator,fake-confluence}.log and target/demo/data (snapshots).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/target/demo"
data_dir="$out/data"
cluster=${CLUSTER:-local}
namespace=${DEMO_NAMESPACE:-demo}
http_port=${DEMO_HTTP_PORT:-8080}
timeout_s=${DEMO_TIMEOUT:-900}
profile=${DEMO_PROFILE:-debug}
connector=demo
secret=confluence-credentials
# Two fake accounts: the Secret starts with the first; rotating it to the second is one
# of the things to try.
user1=demo-admin@example.com token1=demo-token-1
user2=demo-admin-2@example.com token2=demo-token-2

started_at=$(date +%s)
say() { printf '[%4ss] %s\n' "$(($(date +%s) - started_at))" "$*"; }
die() {
  say "error: $*" >&2
  exit 1
}

case $cluster in local | existing) ;; *) die "CLUSTER must be 'local' or 'existing', not '$cluster'" ;; esac
case $profile in debug | release) ;; *) die "DEMO_PROFILE must be 'debug' or 'release', not '$profile'" ;; esac

# Everything the cleanup needs lives in globals: the EXIT trap runs outside any frame.
operator_pid=""
fake_pid=""
started_control_plane=0
kubectl=""
cleaned=0

alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# stop_pid PID NAME SIGNAL: the signal once, up to 15 s to exit, then SIGKILL.
stop_pid() {
  local pid=$1 name=$2 signal=$3 i
  alive "$pid" || return 0
  kill "-$signal" "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 75; i++)); do
    alive "$pid" || {
      wait "$pid" 2>/dev/null || true
      return 0
    }
    sleep 0.2
  done
  say "$name (pid $pid) did not stop within 15s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  ((cleaned)) && return 0
  cleaned=1
  trap '' INT TERM
  echo
  say "stopping ..."
  if [[ $cluster == existing && -n $kubectl ]] && alive "$operator_pid"; then
    # A real cluster outlives the demo: remove the connector while the operator still
    # runs, so that its finalizer is handled and nothing is left pointing at a fake that
    # is about to stop.
    "$kubectl" -n "$namespace" delete cfc "$connector" --ignore-not-found --wait=true --timeout=30s >/dev/null 2>&1 ||
      say "warning: could not delete confluenceconnector $namespace/$connector"
    "$kubectl" -n "$namespace" delete secret "$secret" --ignore-not-found >/dev/null 2>&1 || true
  fi
  # The operator first, so it never sees the fake disappear mid-sync. SIGTERM is its
  # normal stop; it exits within its own 9 s shutdown deadline.
  stop_pid "$operator_pid" operator TERM
  # The fake stops gracefully on SIGINT (its Ctrl-C).
  stop_pid "$fake_pid" fake-confluence INT
  rm -f "$out/operator.pid" "$out/fake-confluence.pid"
  if ((started_control_plane)); then
    "$root/tests/control-plane/run.sh" stop || true
  fi
  say "stopped; logs are in target/demo/"
}
on_exit() {
  local rc=$?
  cleanup
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$out"

# A demo killed outright (SIGKILL, closed terminal) leaves its children running; stop
# those first, but only if the recorded process is still what we started.
for name in operator fake-confluence; do
  pidfile="$out/$name.pid"
  [[ -f $pidfile ]] || continue
  old=$(cat "$pidfile")
  comm=$(cat "/proc/$old/comm" 2>/dev/null || true)
  if [[ $name == operator && $comm == confluence-op* ]] || [[ $name == fake-confluence && $comm == fake-conflue* ]]; then
    say "stopping a $name left over from an earlier demo (pid $old)"
    kill -TERM "$old" 2>/dev/null || true
  fi
  rm -f "$pidfile"
done

# ---------------------------------------------------------------------------- build
say "building the operator and the fake Confluence ($profile) ..."
cargo_flags=()
[[ $profile == release ]] && cargo_flags+=(--release)
# A debug build: the sync's hot C parts (SQLite, zstd) and the fake are optimised even in
# debug builds (see Cargo.toml), and a release build costs several times longer.
(cd "$root" && cargo build "${cargo_flags[@]}" -p confluence-operator --bin confluence-operator \
  -p fake-confluence --bin fake-confluence)
operator_bin="$root/target/$profile/confluence-operator"
fake_bin="$root/target/$profile/fake-confluence"

if [[ -n ${KUBECTL:-} ]]; then
  kubectl=$KUBECTL
elif command -v go >/dev/null 2>&1; then
  say "building kubectl from tests/control-plane (skipped when up to date) ..."
  kubectl=$("$root/tests/tools/kubectl.sh")
elif [[ $cluster == existing ]] && command -v kubectl >/dev/null 2>&1; then
  kubectl=$(command -v kubectl)
  say "no Go: using $kubectl"
else
  die "kubectl is built with Go >= 1.26 (not found); or set KUBECTL=/path/to/kubectl"
fi
k() { "$kubectl" "$@"; }

# ------------------------------------------------------------------------ cluster
if [[ $cluster == local ]]; then
  if "$root/tests/control-plane/run.sh" status >/dev/null 2>&1; then
    say "the local control plane is already running: using it (and leaving it running)"
  else
    say "building and starting the local control plane (a cold build takes 10-30 minutes) ..."
    started_control_plane=1
  fi
  exports=$("$root/tests/control-plane/run.sh" start)
  kubeconfig=$(sed -n 's/^export KUBECONFIG=//p' <<<"$exports")
  [[ -n $kubeconfig && -f $kubeconfig ]] || die "run.sh start printed no kubeconfig"
  export KUBECONFIG=$kubeconfig
else
  [[ -n ${KUBECONFIG:-} || -f ${HOME:-}/.kube/config ]] || die "CLUSTER=existing needs KUBECONFIG (or ~/.kube/config)"
  say "using the cluster of context '$(k config current-context 2>/dev/null || echo '?')'"
  k --request-timeout=10s get --raw /readyz >/dev/null ||
    die "the cluster is not reachable (kubectl get --raw /readyz failed)"
fi

# --------------------------------------------------------------- fake Confluence
say "starting the fake Confluence (medium preset: 5 000 users, 500 groups, 300 spaces) ..."
fake_out="$out/fake-confluence.out"
rm -f "$fake_out"
# Own session (setsid): Ctrl-C reaches only this script, which stops the children in
# order instead of all of them at once.
setsid "$fake_bin" --preset medium \
  --credentials "$user1:$token1:admin" --credentials "$user2:$token2:admin" \
  </dev/null >"$fake_out" 2>"$out/fake-confluence.log" &
fake_pid=$!
echo "$fake_pid" >"$out/fake-confluence.pid"
site=""
for ((i = 0; i < 300; i++)); do
  site=$(sed -n 's/^LISTENING //p' "$fake_out" 2>/dev/null || true)
  [[ -n $site ]] && break
  alive "$fake_pid" || {
    tail -n 20 "$out/fake-confluence.log" >&2
    die "the fake Confluence exited during start-up"
  }
  sleep 0.1
done
[[ -n $site ]] || die "the fake Confluence did not print LISTENING within 30s"
say "fake Confluence at $site"

# ---------------------------------------------------------------- Kubernetes objects
say "applying the CRD (server-side) ..."
k apply --server-side --field-manager=confluence-operator-demo -f "$root/crds/" >/dev/null
k wait --for=condition=Established crd/confluenceconnectors.confluence-operator.io --timeout=60s >/dev/null

say "creating namespace $namespace, Secret $secret and ConfluenceConnector $connector ..."
k create namespace "$namespace" --dry-run=client -o yaml | k apply -f - >/dev/null
k -n "$namespace" create secret generic "$secret" \
  --from-literal=username="$user1" --from-literal=apiToken="$token1" \
  --dry-run=client -o yaml | k apply -f - >/dev/null
k apply -f - >/dev/null <<YAML
apiVersion: confluence-operator.io/v1alpha1
kind: ConfluenceConnector
metadata:
  name: $connector
  namespace: $namespace
spec:
  site: $site
  credentials:
    secretRef:
      name: $secret
YAML

# ---------------------------------------------------------------------- operator
# 8080 as in the docs, unless something already answers there.
if (exec 3<>"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null; then
  say "port $http_port is taken; the operator gets a free port"
  http_port=0
fi
rm -rf "$data_dir"
mkdir -p "$data_dir"
say "starting the operator (namespace $namespace, data dir target/demo/data) ..."
operator_started=$(date +%s)
# A connector left from an earlier demo on the same cluster may still say Connected:
# only a sync that ended after this point counts (RFC 3339 in UTC compares as text).
operator_started_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# NO_COLOR: plain text in the log file.
NO_COLOR=1 setsid "$operator_bin" run \
  --namespace "$namespace" \
  --data-dir "$data_dir" \
  --http-addr "127.0.0.1:$http_port" \
  --allowed-site-suffix 127.0.0.1 --allow-insecure-http \
  </dev/null >"$out/operator.log" 2>&1 &
operator_pid=$!
echo "$operator_pid" >"$out/operator.pid"

# Its real address is in the "serving /metrics ..." line (field addr), in text or JSON.
http_addr=""
for ((i = 0; i < 300; i++)); do
  http_addr=$(grep -m1 'serving /metrics' "$out/operator.log" 2>/dev/null |
    grep -oE 'addr"?[=:]"?[0-9.]+:[0-9]+' | grep -oE '[0-9.]+:[0-9]+$' || true)
  [[ -n $http_addr ]] && break
  alive "$operator_pid" || {
    tail -n 30 "$out/operator.log" >&2
    die "the operator exited during start-up (log: target/demo/operator.log)"
  }
  sleep 0.1
done
[[ -n $http_addr ]] || say "warning: the operator did not log its HTTP address within 30s"

# -------------------------------------------------------------------------- watch
# What the table shows except ages, which change every poll: print only on a real change.
state_query='{range .items[*]}{.metadata.name} {.metadata.generation} {.status.phase} {.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].message} {.status.summary.users} {.status.summary.groups} {.status.lastSyncTime}{"\n"}{end}'
last_state=""
show_if_changed() {
  local state
  state=$(k -n "$namespace" get cfc -o jsonpath="$state_query" 2>&1 || true)
  if [[ $state != "$last_state" ]]; then
    last_state=$state
    echo
    say "kubectl get cfc -n $namespace -o wide"
    k -n "$namespace" get cfc -o wide || true
  fi
}
check_operator() {
  alive "$operator_pid" && return 0
  echo "----- last 30 lines of target/demo/operator.log -----" >&2
  tail -n 30 "$out/operator.log" >&2
  operator_pid=""
  die "the operator exited"
}
# sleep in the background and wait: a trap runs at once on Ctrl-C, not after the sleep.
nap() {
  sleep "$1" &
  wait $! || true
}

say "waiting for $namespace/$connector to be Connected ..."
while :; do
  check_operator
  show_if_changed
  read -r phase generation observed last_sync < <(k -n "$namespace" get cfc "$connector" \
    -o jsonpath='{.status.phase} {.metadata.generation} {.status.observedGeneration} {.status.lastSyncTime}{"\n"}' 2>/dev/null || echo) || true
  if [[ ${phase:-} == Connected && ${observed:-} == "${generation:-}" && ! ${last_sync:-} < $operator_started_utc ]]; then
    break
  fi
  if (($(date +%s) - operator_started >= timeout_s)); then
    k -n "$namespace" describe cfc "$connector" >&2 || true
    die "not Connected within ${timeout_s}s (DEMO_TIMEOUT); see target/demo/operator.log"
  fi
  nap 2
done
now=$(date +%s)
echo
say "Connected: $((now - operator_started))s after the operator started, $((now - started_at))s after 'make demo' started"

# ------------------------------------------------------------------------ summary
jp() { k -n "$namespace" get cfc "$connector" -o jsonpath="$1"; }
snapshot_file=$(jp '{.status.snapshot.file}')
on_disk="missing"
if [[ -n $snapshot_file && -f $data_dir/$snapshot_file ]]; then
  on_disk="$(stat -c %s "$data_dir/$snapshot_file") bytes on disk"
fi
echo
echo "Snapshot summary (status.summary, status.snapshot):"
jp '  users             {.status.summary.users} ({.status.summary.disabledUsers} disabled)
  groups            {.status.summary.groups}
  memberships       {.status.summary.memberships}
  spaces            {.status.summary.spaces}
  space permissions {.status.summary.spacePermissions}
  sync duration     {.status.lastSyncDuration}
  sync id           {.status.snapshot.syncId}
  sha256            {.status.snapshot.sha256}
  size              {.status.snapshot.sizeBytes} bytes
'
echo "  file              target/demo/data/$snapshot_file ($on_disk)"

kubectl_dir=$(dirname "$kubectl")
metrics_url="http://${http_addr:-127.0.0.1:8080}/metrics"
cat <<EOF

Things to try, in another terminal:

  export KUBECONFIG=$KUBECONFIG
  export PATH=$kubectl_dir:\$PATH

  # sync now
  kubectl -n $namespace annotate cfc $connector --overwrite \\
    confluence-operator.io/sync-requested-at="\$(date -u +%Y-%m-%dT%H:%M:%SZ)"

  # the operator's metrics and probes
  curl -s $metrics_url | grep -v '^#' | head -n 40
  curl -s http://${http_addr:-127.0.0.1:8080}/readyz

  # break the credentials (NotConnected), then rotate to the fake's second account (Connected)
  kubectl -n $namespace patch secret $secret -p '{"stringData":{"apiToken":"wrong"}}'
  kubectl -n $namespace patch secret $secret -p '{"stringData":{"username":"$user2","apiToken":"$token2"}}'

  kubectl -n $namespace describe cfc $connector
  kubectl -n $namespace get events
  tail -f target/demo/operator.log

Snapshots are under target/demo/data/. Changes to the connector are shown below.
EOF
if [[ ${DEMO_EXIT_WHEN_CONNECTED:-} == 1 ]]; then
  exit 0
fi
what="the operator and the fake Confluence"
((started_control_plane)) && what="the operator, the fake Confluence and the control plane"
echo "Press Ctrl-C to stop $what."
while :; do
  check_operator
  show_if_changed
  nap 3
done
