#!/usr/bin/env bash
# `make demo` / `make demo-down`: DR-Syncer end to end on three local clusters.
#
#   scripts/demo.sh up     build, start the test bed in .demo/, install the chart, create a
#                          sample app with a PVC full of files in `source`, sync it to
#                          `target`, print a report; the clusters stay up
#   scripts/demo.sh down   stop the test bed and remove .demo/
#
# Needs root (the test bed's simulated nodes use mount namespaces), Rust and Go >= 1.25.
# Env: DEMO_DIR (default .demo), CARGO, CARGO_TARGET_DIR (cargo's own), DEMO_SYNC_TIMEOUT
# (seconds to wait for each sync's result, PVC data included; default 420). See docs/demo.md.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
DEMO_DIR=$(realpath -m "${DEMO_DIR:-$root/.demo}")
CARGO=${CARGO:-cargo}
bin_dir=${CARGO_TARGET_DIR:-$root/target}/debug
testbed=$bin_dir/testbed
cp_dir=${TESTBED_CONTROLPLANE_DIR:-$root/.cache/controlplane/bin}
kubectl=$cp_dir/kubectl
helm=${HELM:-$root/.cache/helm/bin/helm}
examples=$root/deploy/examples/demo
sync_timeout=${DEMO_SYNC_TIMEOUT:-420}
release_ns=dr-syncer
src_ns=my-app
dst_ns=my-app-dr
pvc=web-data
mapping=my-app
# Objects the controller wrote carry this label (controller/src/replicate/mark.rs).
managed="dr-syncer.io/managed-by-mapping=$release_ns.$mapping"

started=$SECONDS
phase_names=()
phase_secs=()
phase_t0=0
phase_name=""

log() { printf '[demo %4ds] %s\n' "$((SECONDS - started))" "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}

# Names the phase a failing command stopped the demo in (set -e exits without a word).
on_exit() {
  local rc=$1
  stop_heartbeat
  if ((rc != 0)) && [[ -n $phase_name ]]; then
    log "stopped in phase '$phase_name' (exit $rc)"
    [[ -d $DEMO_DIR/logs ]] && log "logs: $DEMO_DIR/logs/ (demo.log, supervisor.log, <cluster>-<component>.log)"
  fi
}
trap 'on_exit $?' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

phase() {
  end_phase
  phase_name=$1
  phase_t0=$SECONDS
  log "== $phase_name"
}

end_phase() {
  if [[ -n $phase_name ]]; then
    phase_names+=("$phase_name")
    phase_secs+=("$((SECONDS - phase_t0))")
    phase_name=""
  fi
}

# Runs a command in the foreground (so Ctrl-C reaches it), printing a heartbeat every 30 s
# while it runs: the Go build of the control plane says nothing for ~20 minutes when cold.
# Returns the command's exit status.
with_heartbeat() {
  local label=$1 rc=0
  shift
  heartbeat "$label" &
  hb_pid=$!
  "$@" || rc=$?
  stop_heartbeat
  return "$rc"
}
hb_pid=""

heartbeat() {
  local label=$1 t0=$SECONDS next=30
  while sleep 1; do # a clock tick, not a wait for a condition
    if ((SECONDS - t0 >= next)); then
      log "   ... still $label ($((SECONDS - t0)) s)"
      next=$((next + 30))
    fi
  done
}

stop_heartbeat() {
  if [[ -n $hb_pid ]]; then
    kill "$hb_pid" 2>/dev/null || true
    wait "$hb_pid" 2>/dev/null || true
    hb_pid=""
  fi
}

# poll SECONDS DESCRIPTION CMD...: runs CMD every second until it succeeds or the deadline
# passes (returns 1). Prints what it waits for every 15 s, with the STATUS_HINT function's
# output when one is set.
poll() {
  local limit=$1 what=$2
  shift 2
  local t0=$SECONDS next=15
  until "$@"; do
    if ((SECONDS - t0 >= limit)); then
      return 1
    fi
    if ((SECONDS - t0 >= next)); then
      log "   ... waiting for $what ($((SECONDS - t0)) s)${status_hint:+: $($status_hint)}"
      next=$((next + 15))
    fi
    sleep 1
  done
}
status_hint=""

k() {
  local cluster=$1
  shift
  "$kubectl" --kubeconfig "$DEMO_DIR/$cluster.kubeconfig" "$@"
}

# Quiet kubectl: output goes to the demo log, shown only when the command fails.
kq() {
  local out
  if ! out=$(k "$@" 2>&1); then
    printf '%s\n' "$out" >&2
    return 1
  fi
  printf '%s\n' "$out" >>"$DEMO_DIR/logs/demo.log"
}

require_tools() {
  [[ $(id -u) -eq 0 ]] || die "run as root (the test bed's simulated nodes use mount namespaces)"
  command -v "$CARGO" >/dev/null || die "cargo not found (install Rust with rustup)"
  command -v go >/dev/null || die "go not found on PATH (Go >= 1.25, e.g. /usr/local/go/bin)"
}

# --- build ----------------------------------------------------------------------------------

build() {
  phase "build"
  log "control plane (Kubernetes from its Go modules: ~20 min cold, a no-op when current)"
  with_heartbeat "building the control plane" scripts/build-controlplane.sh
  log "helm (from its Go module: a few minutes cold, a no-op when current)"
  with_heartbeat "building helm" scripts/build-helm.sh
  log "controller, agent, rsync-worker, testbed (cargo, debug profile)"
  with_heartbeat "building our binaries" "$CARGO" build --locked \
    -p dr-syncer-controller -p dr-syncer-agent -p dr-syncer-rsync-worker -p dr-syncer-e2e
}

# --- test bed -------------------------------------------------------------------------------

# `down` removes DEMO_DIR: only ever a directory that holds nothing but a test bed's files.
check_demo_dir() {
  local entry
  case $DEMO_DIR in
    / | "$root" | "$HOME" | /root | /home | /tmp) die "DEMO_DIR=$DEMO_DIR: refusing to use it" ;;
  esac
  [[ -d $DEMO_DIR ]] || return 0
  for entry in "$DEMO_DIR"/* "$DEMO_DIR"/.[!.]*; do
    [[ -e $entry ]] || continue
    case ${entry##*/} in
      state.json | env | logs | clusters | *.kubeconfig | *.flat | dr-syncer.yaml) ;;
      *) die "$DEMO_DIR holds ${entry##*/}, which a demo does not create: not removing it" ;;
    esac
  done
}

bed_down() {
  check_demo_dir
  if [[ -f $DEMO_DIR/state.json || -d $DEMO_DIR/clusters ]]; then
    if [[ ! -x $testbed ]]; then
      log "$testbed is missing: building it to stop the bed in $DEMO_DIR"
      "$CARGO" build --locked -q -p dr-syncer-e2e --bin testbed
    fi
    "$testbed" down --dir "$DEMO_DIR"
  fi
  rm -rf "$DEMO_DIR"
}

bed_up() {
  phase "start clusters"
  if [[ -e $DEMO_DIR ]]; then
    log "a previous demo in $DEMO_DIR: taking it down first"
    bed_down
  fi
  log "testbed up: clusters controller, source, target (2 simulated nodes each)"
  with_heartbeat "starting the clusters" \
    "$testbed" up --dir "$DEMO_DIR" --clusters controller,source,target --nodes 2 \
    --controlplane-dir "$cp_dir" --bin-dir "$bin_dir"
  : >"$DEMO_DIR/logs/demo.log"
}

# --- install --------------------------------------------------------------------------------

install_chart() {
  phase "install chart"
  log "helm template deploy/helm/dr-syncer | kubectl apply (controller cluster, namespace $release_ns)"
  kq controller apply -f deploy/manifests/namespace.yaml
  # On the test bed a pod's IP is a loopback address of its node: bind metrics there, not to
  # 0.0.0.0. The default images (ghcr.io/dr-syncer/dr-syncer-*) run our binaries on the
  # simulated nodes.
  # shellcheck disable=SC2016 # $(POD_IP) is for Kubernetes to expand, not the shell
  "$helm" template dr-syncer deploy/helm/dr-syncer --namespace "$release_ns" --include-crds \
    --set-string 'metrics.bindAddress=$(POD_IP)' >"$DEMO_DIR/dr-syncer.yaml"
  kq controller apply --server-side -f "$DEMO_DIR/dr-syncer.yaml"
  kq controller wait --for=condition=Established --timeout=60s \
    crd/remoteclusters.dr-syncer.io crd/clustermappings.dr-syncer.io \
    crd/namespacemappings.dr-syncer.io
  log "waiting for the controller pod"
  with_heartbeat "waiting for the controller pod" \
    kq controller -n "$release_ns" rollout status deployment/dr-syncer --timeout=120s ||
    die "controller not ready; k controller -n $release_ns logs deploy/dr-syncer"
}

# --- sample app -----------------------------------------------------------------------------

pvc_bound() {
  [[ $(k "$1" -n "$2" get pvc "$3" -o jsonpath='{.status.phase}' 2>/dev/null) == Bound ]]
}

# The PV directory of a bound PVC as seen on this machine: the PV's hostPath under the root
# of the simulated node its node affinity names (e2e/src/storage.rs).
volume_dir() {
  local cluster=$1 ns=$2 claim=$3 pv node path
  pv=$(k "$cluster" -n "$ns" get pvc "$claim" -o jsonpath='{.spec.volumeName}')
  node=$(k "$cluster" get pv "$pv" \
    -o jsonpath='{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}')
  path=$(k "$cluster" get pv "$pv" -o jsonpath='{.spec.hostPath.path}')
  [[ -n $node && -n $path ]] || return 1
  printf '%s\n' "$DEMO_DIR/clusters/$cluster/nodes/$node/root$path"
}

volume_node() {
  local pv
  pv=$(k "$1" -n "$2" get pvc "$3" -o jsonpath='{.spec.volumeName}')
  k "$1" get pv "$pv" \
    -o jsonpath='{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}'
}

# The site the sample app serves: 1 index, 200 pages, a stylesheet, a symlink and three
# 4 MiB binary uploads (~12.5 MiB in 206 entries).
write_site() {
  local dir=$1 i
  mkdir -p "$dir/pages" "$dir/assets" "$dir/uploads"
  printf '<h1>%s</h1>\n' "hello from the source cluster" >"$dir/index.html"
  for i in $(seq -w 1 200); do
    printf '<h2>page %s</h2>\n<p>written by make demo at %s</p>\n' "$i" "$(date -u +%FT%TZ)" \
      >"$dir/pages/page-$i.html"
  done
  printf 'body { font-family: sans-serif; }\n' >"$dir/assets/site.css"
  ln -sfn pages/page-001.html "$dir/latest.html"
  for i in 1 2 3; do
    head -c $((4 << 20)) /dev/urandom >"$dir/uploads/photo-$i.bin"
  done
  chmod 0600 "$dir/uploads/photo-3.bin"
}

sample_app() {
  phase "sample app"
  log "source: namespace $src_ns (Deployment web x2, Service, ConfigMap, Secret, PVC $pvc)"
  kq source apply -f "$examples/source/app.yaml"
  poll 120 "PVC $src_ns/$pvc to bind" pvc_bound source "$src_ns" "$pvc" ||
    die "PVC $src_ns/$pvc not bound in 120 s"
  with_heartbeat "waiting for the web pods" \
    kq source -n "$src_ns" rollout status deployment/web --timeout=120s
  src_dir=$(volume_dir source "$src_ns" "$pvc")
  write_site "$src_dir"
  log "wrote $(find "$src_dir" -type f | wc -l) files ($(du -sh "$src_dir" | cut -f1)) into the PV on $(volume_node source "$src_ns" "$pvc")"
}

# --- mappings and sync ----------------------------------------------------------------------

kubeconfig_secrets() {
  local secret cluster flat
  # Self-contained kubeconfigs (certificates embedded): the controller pod cannot read files
  # on this machine (deploy/examples/README.md).
  for pair in source-kubeconfig:source dr-kubeconfig:target; do
    secret=${pair%%:*}
    cluster=${pair#*:}
    flat=$DEMO_DIR/$secret.flat
    k "$cluster" config view --raw --minify --flatten >"$flat"
    k controller -n "$release_ns" create secret generic "$secret" \
      --from-file=kubeconfig="$flat" --dry-run=client -o yaml | kq controller apply -f -
  done
}

apply_mappings() {
  phase "mappings"
  log "kubeconfig Secrets, RemoteClusters source + dr (pvcSync on source), ClusterMapping, NamespaceMapping"
  kubeconfig_secrets
  kq controller -n "$release_ns" apply -f "$examples/controller/"
  with_heartbeat "waiting for the RemoteClusters to be Ready" \
    kq controller -n "$release_ns" wait --for=condition=Ready --timeout=120s \
    remotecluster/source remotecluster/dr ||
    die "RemoteClusters not Ready; k controller -n $release_ns describe remoteclusters"
}

nm_field() {
  k controller -n "$release_ns" get namespacemapping "$mapping" -o jsonpath="$1" 2>/dev/null
}
nm_condition() { # TYPE FIELD (status|reason|message)
  nm_field "{.status.conditions[?(@.type==\"$1\")].$2}"
}

resources_synced() {
  [[ $(nm_field '{.status.lastSyncNowValue}') == "$sync_value" ]] &&
    [[ $(nm_field '{.status.phase}') =~ ^(Completed|Failed)$ ]]
}

sync_done() { resources_synced && data_settled; }

# Done waiting for data: DataSynced settled (True, or False with a final reason), or the
# controller says it does not act on syncData (no data plane in this build).
data_settled() {
  local status reason
  status=$(nm_condition DataSynced status)
  reason=$(nm_condition DataSynced reason)
  if [[ $status == True ]]; then return 0; fi
  if [[ $status == False && -n $reason && $reason != DataSyncInProgress ]]; then return 0; fi
  [[ $(nm_condition UnsupportedFields status) == True &&
    $(nm_condition UnsupportedFields message) == *syncData* ]]
}

data_hint() {
  local reason
  reason=$(nm_condition DataSynced reason)
  printf 'phase %s, DataSynced %s' "$(nm_field '{.status.phase}')" "${reason:-not set yet}"
}

sync() {
  phase "first sync"
  sync_value="demo-$(date +%s)"
  log "trigger: annotate namespacemapping $mapping dr-syncer.io/sync-now=$sync_value"
  kq controller -n "$release_ns" annotate namespacemapping "$mapping" \
    "dr-syncer.io/sync-now=$sync_value" --overwrite
  log "the controller copies the resources, deploys the agents in source, runs a worker pod in target"
  status_hint=data_hint
  poll "$sync_timeout" "the sync (resources, then PVC data)" sync_done ||
    log "no final sync result in $sync_timeout s; reporting what is there"
  log "sync finished: phase $(nm_field '{.status.phase}'), DataSynced $(nm_condition DataSynced reason)"
  status_hint=""
}

# --- report ---------------------------------------------------------------------------------

# "<entries> <files> <bytes> <digest>" of a directory tree: the digest covers every entry's
# type, relative path, mode and symlink target, and every file's SHA-256.
tree_summary() {
  local dir=$1 files bytes entries digest
  files=$(find "$dir" -type f | wc -l)
  entries=$(find "$dir" -mindepth 1 | wc -l)
  bytes=$(find "$dir" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  digest=$(
    cd "$dir" &&
      {
        find . -mindepth 1 -printf '%y %p %m %l\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum
      } | sha256sum | cut -c1-16
  )
  printf '%s %s %s %s\n' "$entries" "$files" "$bytes" "$digest"
}

report_resources() {
  echo
  echo "Replicated: source/$src_ns -> target/$dst_ns (objects written by DR-Syncer):"
  k target -n "$dst_ns" get configmaps,secrets,deployments,services,persistentvolumeclaims \
    -l "$managed" -o custom-columns='KIND:.kind,NAME:.metadata.name,WRITTEN:.metadata.creationTimestamp' \
    2>&1 | sed 's/^/  /'
  local replicas original
  replicas=$(k target -n "$dst_ns" get deployment web -o jsonpath='{.spec.replicas}' 2>/dev/null)
  original=$(k target -n "$dst_ns" get deployment web \
    -o jsonpath='{.metadata.annotations.dr-syncer\.io/original-replicas}' 2>/dev/null)
  echo
  echo "Deployment web: source replicas $(k source -n "$src_ns" get deployment web -o jsonpath='{.spec.replicas}')," \
    "target replicas ${replicas:-?} (dr-syncer.io/original-replicas=${original:-?}, ready for failover)"
  echo "PVC $pvc: source class $(k source -n "$src_ns" get pvc "$pvc" -o jsonpath='{.spec.storageClassName}')," \
    "target class $(k target -n "$dst_ns" get pvc "$pvc" -o jsonpath='{.spec.storageClassName}' 2>/dev/null)"
  echo "NamespaceMapping: phase $(nm_field '{.status.phase}'), Synced=$(nm_condition Synced status)" \
    "($(nm_condition Synced reason)), $(nm_field '{.status.syncStats.totalResources}') resources"
}

# Prints the data check; returns 0 only when both trees are equal.
report_data() {
  local status reason message unsupported
  status=$(nm_condition DataSynced status)
  reason=$(nm_condition DataSynced reason)
  message=$(nm_condition DataSynced message)
  echo
  echo "PVC data ($src_ns/$pvc -> $dst_ns/$pvc):"
  if [[ -z $status ]]; then
    unsupported=$(nm_condition UnsupportedFields message)
    echo "  DATA SYNC DID NOT RUN: the NamespaceMapping has no DataSynced condition."
    [[ -n $unsupported ]] && echo "  The controller says: $unsupported"
  else
    echo "  DataSynced=$status ($reason): $message"
  fi
  k controller -n "$release_ns" get namespacemapping "$mapping" -o jsonpath='{range .status.pvcSyncStatus[*]}  worker result: {.pvc} {.result} on {.node} in {.duration}: {.filesTransferred} files, {.bytesTransferred} bytes, {.wireBytes} on the wire, attempts {.attempts}{"\n"}{end}' 2>/dev/null || true
  echo "  events on the target PVC:"
  k target -n "$dst_ns" get events --field-selector "involvedObject.name=$pvc" \
    --sort-by=.metadata.creationTimestamp -o custom-columns='REASON:.reason,MESSAGE:.message' \
    --no-headers 2>/dev/null | grep '^DataSync' | cut -c1-120 | sed 's/^/    /' || true
  data_check
}

# Compares the two volumes' trees; returns 0 only when equal and DataSynced is True.
data_check() {
  local src dst dst_dir status
  status=$(nm_condition DataSynced status)
  src=$(tree_summary "$src_dir")
  if ! pvc_bound target "$dst_ns" "$pvc"; then
    echo "  source: ${src}   (entries files bytes digest)"
    echo "  target: PVC $dst_ns/$pvc is not bound (no worker pod mounted it): DATA NOT SYNCED"
    return 1
  fi
  dst_dir=$(volume_dir target "$dst_ns" "$pvc")
  dst=$(tree_summary "$dst_dir")
  printf '  %-8s %8s %6s %10s  %s\n' "" entries files bytes "tree digest (sha256)"
  # shellcheck disable=SC2086
  printf '  %-8s %8s %6s %10s  %s\n' source $src
  # shellcheck disable=SC2086
  printf '  %-8s %8s %6s %10s  %s\n' target $dst
  if [[ $src == "$dst" && $status == True ]]; then
    echo "  data check: EQUAL (same entries, modes, symlinks and file contents)"
    return 0
  fi
  echo "  data check: DIFFERENT: DATA SYNC DID NOT COMPLETE"
  return 1
}

report_timings() {
  local i total=0
  echo
  echo "Timings:"
  for i in "${!phase_names[@]}"; do
    printf '  %-16s %5d s\n' "${phase_names[$i]}" "${phase_secs[$i]}"
    total=$((total + phase_secs[i]))
  done
  printf '  %-16s %5d s\n' total "$total"
}

report_next() {
  local d=${DEMO_DIR#"$root"/}
  cat <<EOF

The clusters keep running. Look around:
  . $d/env                                    # kubectl on PATH, KUBECONFIG_<CLUSTER>
  kubectl --kubeconfig $d/controller.kubeconfig -n $release_ns get rc,cm,nm
  kubectl --kubeconfig $d/controller.kubeconfig -n $release_ns describe nm $mapping
  kubectl --kubeconfig $d/controller.kubeconfig -n $release_ns logs deploy/dr-syncer
  kubectl --kubeconfig $d/source.kubeconfig -n dr-syncer-agent get ds,pods -o wide
  kubectl --kubeconfig $d/target.kubeconfig -n $dst_ns get all,cm,secret,pvc
  kubectl --kubeconfig $d/controller.kubeconfig -n $release_ns annotate nm $mapping dr-syncer.io/sync-now="\$(date +%s)" --overwrite
Stop everything: make demo-down
EOF
}

report() {
  end_phase
  echo
  echo "================================ DR-Syncer demo ================================"
  report_resources
  printf '%s\n' "$first_report"
  [[ -n $second_report ]] && printf '%s\n' "$second_report"
  report_timings
  report_next
}

# --- second sync: only the changes cross the wire --------------------------------------------

# A few edits in the source volume: 5 pages appended to, 64 KiB overwritten inside a 4 MiB
# file, one page added, one deleted.
change_site() {
  local dir=$1 i
  for i in 001 002 003 004 005; do
    printf '<p>edited at %s</p>\n' "$(date -u +%FT%TZ)" >>"$dir/pages/page-$i.html"
  done
  dd if=/dev/urandom of="$dir/uploads/photo-1.bin" bs=64K count=1 seek=16 conv=notrunc status=none
  printf '<h2>a new page</h2>\n' >"$dir/pages/new.html"
  rm -f "$dir/pages/page-200.html"
}

pvc_result() { # FIELD of this PVC's pvcSyncStatus entry
  nm_field "{.status.pvcSyncStatus[?(@.pvc==\"$pvc\")].$1}"
}

# A counter of this PVC's entry; the API omits counters that are 0.
pvc_count() {
  local value
  value=$(pvc_result "$1")
  printf '%s' "${value:-0}"
}

resync_settled() {
  [[ $(pvc_result lastSyncTime) != "$resync_before" ]] && resources_synced && data_settled
}

resync() {
  phase "second sync"
  change_site "$src_dir"
  log "changed the source volume: 5 pages edited, 64 KiB inside uploads/photo-1.bin, 1 page added, 1 deleted"
  resync_before=$(pvc_result lastSyncTime)
  sync_value="demo-$(date +%s)-2"
  kq controller -n "$release_ns" annotate namespacemapping "$mapping" \
    "dr-syncer.io/sync-now=$sync_value" --overwrite
  status_hint=data_hint
  poll "$sync_timeout" "the second sync" resync_settled ||
    log "no result of the second sync in $sync_timeout s; reporting what is there"
  log "second sync finished: $(pvc_result result), $(pvc_result wireBytes) bytes on the wire"
  status_hint=""
}

report_resync() {
  echo
  echo "Second sync, after changing the source volume (5 pages edited, 64 KiB rewritten inside a"
  echo "4 MiB file, 1 page added, 1 deleted): only the changes cross the wire."
  printf '  worker: %s in %s: %s files transferred, %s deleted, literal %s bytes, matched %s bytes, %s bytes on the wire\n' \
    "$(pvc_result result)" "$(pvc_result duration)" "$(pvc_count filesTransferred)" \
    "$(pvc_count filesDeleted)" "$(pvc_count literalBytes)" "$(pvc_count matchedBytes)" \
    "$(pvc_count wireBytes)"
  data_check
}

main() {
  case ${1:-up} in
    up)
      require_tools
      build
      bed_up
      install_chart
      sample_app
      apply_mappings
      sync
      local ok=1
      phase "data check"
      first_report=$(report_data) || ok=0
      second_report=""
      if ((ok)); then
        resync
        phase "data check 2"
        second_report=$(report_resync) || ok=0
      fi
      report
      if ((ok)); then
        log "demo complete"
      else
        log "demo finished WITHOUT the PVC data replicated (see 'PVC data' above); clusters left up"
        exit 1
      fi
      ;;
    down)
      bed_down
      log "demo stopped, $DEMO_DIR removed"
      ;;
    *)
      echo "usage: $0 [up|down]" >&2
      exit 2
      ;;
  esac
}

main "$@"
