#!/usr/bin/env bash
# End to end under Slurm on this machine: a private single-node cluster
# (deploy/slurm/local-cluster.sh), the CPU demo job (deploy/slurm/olmo-cpu-demo.sbatch:
# coordinator + a tp 2 x pp 2 worker group launched with srun --mpi=pmix), one request, then
# scancel during a long request: the request must end with finish_reason "shutdown" (drained) or
# complete, and no olmo-coordinator / olmo-worker of this test may remain. Then, on a machine
# without GPUs, the GPU script olmo-7b.sbatch runs the same way on 2 fake GPUs (Gres backed by
# /dev/null and /dev/zero), which checks its `srun --gpus-per-node` geometry; the workers
# compute on the CPU.
# The cluster is always stopped (by the PIDs it recorded) on exit. Needs root.
# Prints SLURM_E2E_PASSED when everything passed.
#   bash tests/slurm/slurm_e2e.sh [BUILD_DIR]      (default <repo>/build)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" 2>/dev/null && pwd)" || {
  echo "slurm_e2e: FAIL: build directory ${1:-$ROOT/build} does not exist" >&2
  exit 1
}
SLURM_DIR="$ROOT/deploy/slurm"
BIN_DIR="$BUILD/tools"
CLI="$BIN_DIR/olmo-cli/olmo-cli"
WORK=""
CLIENT_PID=""
JOB_ID=""
JOB_OUT=""
FAKE_GPUS=0
# Bounded waits (seconds).
ENDPOINT_WAIT=${SLURM_E2E_ENDPOINT_WAIT:-240}
CANCEL_WAIT=${SLURM_E2E_CANCEL_WAIT:-90}

log() { echo "slurm_e2e: $(date +%T) $*"; }

# Prints the job's output and the service logs (for a failure).
dump_logs() {
  [ -n "$WORK" ] || return 0
  local f
  for f in "$WORK"/job*.out "$WORK"/.olmo-*/coordinator.log "$WORK"/.olmo-*/workers.*.log \
    "$WORK"/long.err; do
    [ -f "$f" ] || continue
    echo "----- $f (last 40 lines) -----" >&2
    tail -n 40 "$f" >&2 || true
  done
}

die() {
  echo "slurm_e2e: FAIL: $*" >&2
  dump_logs
  exit 1
}

cleanup() {
  local rc=$?
  trap - EXIT
  if [ -n "$CLIENT_PID" ] && kill -0 "$CLIENT_PID" 2>/dev/null; then
    kill "$CLIENT_PID" 2>/dev/null || true
  fi
  if [ -n "$WORK" ]; then
    # local-cluster.sh stop cancels our jobs, then stops munged/slurmctld/slurmd by PID.
    OLMO_SLURM_DIR="$WORK/cluster" bash "$SLURM_DIR/local-cluster.sh" stop || true
    if [ "$rc" -eq 0 ] && [ -z "${SLURM_E2E_KEEP:-}" ]; then
      rm -rf "$WORK"
    else
      echo "slurm_e2e: files kept in $WORK" >&2
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT

check_prerequisites() {
  local b
  for b in olmo-coordinator olmo-worker olmo-cli make-tiny; do
    [ -x "$BIN_DIR/$b/$b" ] ||
      die "$BIN_DIR/$b/$b is missing: build first (cmake --build $BUILD --target olmo-coordinator olmo-worker olmo-cli make-tiny)"
  done
  [ "$(id -u)" -eq 0 ] || die "must run as root (starts munged, slurmctld and slurmd)"
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null ||
    [ ! -e /usr/lib/x86_64-linux-gnu/pmix2/lib/libpmix.so ]; then
    log "installing Slurm"
    bash "$SLURM_DIR/install-slurm.sh" || die "deploy/slurm/install-slurm.sh failed"
  fi
}

start_cluster() {
  WORK=$(mktemp -d /tmp/olmo-slurm-e2e.XXXXXX)
  chmod 0755 "$WORK"
  export OLMO_SLURM_DIR="$WORK/cluster"
  # Ports apart from a default cluster (6817/6818) and slurm_static's (6837/6838).
  export OLMO_SLURMCTLD_PORT="${OLMO_E2E_CTLD_PORT:-6827}" OLMO_SLURMD_PORT="${OLMO_E2E_SLURMD_PORT:-6828}"
  # KillWait 30 s > TERM_GRACE_SECONDS 15 s > DRAIN_SECONDS 5 s (see deploy/slurm/README.md).
  export OLMO_SLURM_KILLWAIT=30
  # Fake GPUs only where there are no real ones (they would be handed out as CUDA indices).
  FAKE_GPUS=0
  if [ ! -e /dev/nvidiactl ] && [ -z "${SLURM_E2E_NO_GPU_SCRIPT:-}" ]; then FAKE_GPUS=2; fi
  export OLMO_SLURM_FAKE_LOCAL_GPUS=$FAKE_GPUS
  log "starting a private Slurm cluster in $OLMO_SLURM_DIR"
  bash "$SLURM_DIR/local-cluster.sh" start >/dev/null || die "local-cluster.sh start failed"
  export SLURM_CONF="$OLMO_SLURM_DIR/slurm.conf"
}

# Submits batch script $1 with output file $2 and extra sbatch arguments $3...; the CPU demo
# creates the demo checkpoint in $WORK/model.
submit() {
  local script=$1 out=$2
  shift 2
  JOB_OUT=$out
  JOB_ID=$(cd "$WORK" && MODEL="$WORK/model" OLMO_BIN_DIR="$BIN_DIR" DRAIN_SECONDS=5 \
    TERM_GRACE_SECONDS=15 HEALTH_TIMEOUT=180 ON_WORKER_FAILURE="${E2E_ON_WORKER_FAILURE:-fail}" \
    sbatch --parsable --output="$out" "$@" "$SLURM_DIR/$script.sbatch") ||
    die "sbatch $script.sbatch failed"
  JOB_ID=${JOB_ID%%;*}
  log "submitted $script.sbatch $*: job $JOB_ID"
}

job_listed() { squeue -h -j "$JOB_ID" 2>/dev/null | grep -q .; }

wait_endpoint() {
  local f="$WORK/.olmo-$JOB_ID/endpoint" t0=$SECONDS
  while [ ! -s "$f" ]; do
    job_listed || die "job $JOB_ID ended before serving ($(scontrol show job "$JOB_ID" 2>/dev/null | grep -o 'JobState=[A-Z]*'))"
    ((SECONDS - t0 < ENDPOINT_WAIT)) || die "no endpoint file $f after $ENDPOINT_WAIT s"
    sleep 1
  done
  ENDPOINT=$(cat "$f")
  log "serving on $ENDPOINT after $((SECONDS - t0)) s"
}

# One request: a non-empty reply whose last response has a finish_reason.
first_request() {
  local out
  out=$(timeout 120 "$CLI" --server "$ENDPOINT" --timeout-s 100 generate "The capital of France is" \
    --max-tokens 8 --temperature 0 --json) || die "olmo-cli generate failed: $out"
  local summary
  summary=$(jq -rs '[(map(.text) | join("")), (map(.token_ids | length) | add),
                     (last | .finish_reason)] | @tsv' <<<"$out") || die "not JSON lines: $out"
  local text ntok reason
  IFS=$'\t' read -r text ntok reason <<<"$summary"
  [ "${ntok:-0}" -gt 0 ] || die "no tokens in the reply: $out"
  [ -n "$text" ] || die "empty text in the reply: $out"
  [ -n "$reason" ] || die "the last response has no finish_reason: $out"
  log "reply: $ntok tokens, finish_reason $reason, text '$text'"
}

# Kills one worker rank while a request streams: the batch script relaunches the worker step, the
# new group attaches, and the coordinator resumes the request on it (recompute): the request
# completes with all its tokens and one finish.
kill_rank_during_request() {
  local want=1500
  "$CLI" --server "$ENDPOINT" generate "Once upon a time" --max-tokens "$want" --ignore-eos \
    --temperature 0 --json >"$WORK/kill.jsonl" 2>"$WORK/kill.err" &
  local pid=$! t0=$SECONDS
  until [ -s "$WORK/kill.jsonl" ]; do
    kill -0 "$pid" 2>/dev/null || die "the request ended before streaming: $(cat "$WORK/kill.err")"
    ((SECONDS - t0 < 60)) || die "the request streamed nothing in 60 s"
    sleep 0.1
  done
  local victim
  victim=$(pgrep -f "olmo-worker --model $WORK/model" | tail -n 1) || die "no worker rank found"
  kill -9 "$victim"
  log "killed worker rank pid $victim while the request streamed"
  t0=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS - t0 < 240)) || die "the request did not complete 240 s after the kill"
    sleep 0.5
  done
  wait "$pid" || die "olmo-cli failed after the kill: $(tail -n 3 "$WORK/kill.err")"
  local reason n finishes
  reason=$(tail -n 1 "$WORK/kill.jsonl" | jq -r '.finish_reason // ""')
  n=$(jq -s 'map(.token_ids | length) | add' "$WORK/kill.jsonl")
  finishes=$(jq -s 'map(select(.finish_reason != "")) | length' "$WORK/kill.jsonl")
  if [ "$reason" != length ] || [ "$n" != "$want" ] || [ "$finishes" != 1 ]; then
    die "after the kill: finish_reason '$reason', $n tokens (want $want), $finishes finishes"
  fi
  grep -q "starting worker group attempt 1" "$JOB_OUT" || die "the worker step was not relaunched"
  log "rank killed: step relaunched, request completed ($n tokens, one finish) $((SECONDS - t0)) s later"
}

# Starts a long request, scancels the job while it streams, and checks the drain.
cancel_during_request() {
  # --max-tokens 0 = the rest of the context (thousands of tokens); --ignore-eos: no early stop.
  "$CLI" --server "$ENDPOINT" generate "Once upon a time" --max-tokens 0 --ignore-eos \
    --temperature 0 --json >"$WORK/long.jsonl" 2>"$WORK/long.err" &
  CLIENT_PID=$!
  local t0=$SECONDS
  until [ -s "$WORK/long.jsonl" ]; do
    kill -0 "$CLIENT_PID" 2>/dev/null || die "the long request ended before streaming"
    ((SECONDS - t0 < 60)) || die "the long request streamed nothing in 60 s"
    sleep 0.2
  done
  sleep 1
  log "long request streaming ($(wc -l <"$WORK/long.jsonl") responses): scancel $JOB_ID"
  t0=$SECONDS
  scancel "$JOB_ID" || die "scancel $JOB_ID failed"
  while job_listed; do
    ((SECONDS - t0 < CANCEL_WAIT)) || die "job $JOB_ID still listed $CANCEL_WAIT s after scancel"
    sleep 0.5
  done
  log "job gone $((SECONDS - t0)) s after scancel ($(scontrol show job "$JOB_ID" 2>/dev/null | grep -o 'JobState=[A-Z]*'))"
  local crc=0
  while kill -0 "$CLIENT_PID" 2>/dev/null; do
    ((SECONDS - t0 < CANCEL_WAIT)) || die "the client still runs $CANCEL_WAIT s after scancel"
    sleep 0.2
  done
  wait "$CLIENT_PID" || crc=$?
  CLIENT_PID=""
  local reason n
  reason=$(tail -n 1 "$WORK/long.jsonl" | jq -r '.finish_reason // ""' 2>/dev/null) || reason=""
  n=$(jq -s 'map(.token_ids | length) | add' "$WORK/long.jsonl" 2>/dev/null) || n="?"
  case "$reason" in
    shutdown | length | stop) log "long request ended: finish_reason $reason after $n tokens (client rc $crc)" ;;
    *) die "long request ended without finish_reason shutdown/length/stop (got '$reason', client rc $crc): $(tail -n 2 "$WORK/long.jsonl") $(cat "$WORK/long.err")" ;;
  esac
  check_clean_stop
}

check_clean_stop() {
  grep -q "got TERM: stopping" "$JOB_OUT" || die "the batch script did not see SIGTERM"
  grep -q "coordinator exited (rc 0)" "$JOB_OUT" || die "the coordinator did not exit cleanly"
}

# The GPU script on 2 fake GPUs: one rank per GPU (tp 2), one request, scancel.
gpu_script() {
  # Fake GPUs have no CUDA device: the workers run the CPU backend.
  export WORKER_DEVICE=cpu
  submit olmo-7b "$WORK/job-gpu.out" --gpus-per-node=2 --ntasks-per-node=2 --cpus-per-task=1
  unset WORKER_DEVICE
  wait_endpoint
  grep -qF -- "--gpus-per-node=2 --gpu-bind=none" "$JOB_OUT" ||
    die "olmo-7b.sbatch did not give its ranks the node's 2 GPUs (--gpus-per-node=2 --gpu-bind=none)"
  grep -qF "tp=2 pp=1 ranks=2" "$JOB_OUT" || die "olmo-7b.sbatch did not resolve tp 2 on 2 GPUs"
  first_request
  local t0=$SECONDS
  scancel "$JOB_ID" || die "scancel $JOB_ID failed"
  while job_listed; do
    ((SECONDS - t0 < CANCEL_WAIT)) || die "job $JOB_ID still listed $CANCEL_WAIT s after scancel"
    sleep 0.5
  done
  check_clean_stop
  log "olmo-7b.sbatch on 2 fake GPUs: served, drained $((SECONDS - t0)) s after scancel"
}

# No coordinator or worker of this test's job may remain (matched on this test's private model
# path, so other tests' processes on this machine are not counted).
check_no_leftovers() {
  local t0=$SECONDS left
  while true; do
    left=$(pgrep -af "olmo-(coordinator|worker) --model $WORK/model" || true)
    [ -z "$left" ] && break
    ((SECONDS - t0 < 30)) || die "processes left 30 s after the job ended:"$'\n'"$left"
    sleep 0.5
  done
  log "no olmo-coordinator / olmo-worker process left"
}

main() {
  check_prerequisites
  start_cluster
  E2E_ON_WORKER_FAILURE=relaunch submit olmo-cpu-demo "$WORK/job.out"
  wait_endpoint
  first_request
  kill_rank_during_request
  cancel_during_request
  check_no_leftovers
  if [ "$FAKE_GPUS" -gt 0 ]; then
    gpu_script
    check_no_leftovers
  else
    log "GPU script phase skipped (real GPUs here, or SLURM_E2E_NO_GPU_SCRIPT set)"
  fi
  echo SLURM_E2E_PASSED
}

main "$@"
