#!/usr/bin/env bash
# Shared logic of the Olmo Serve Slurm batch scripts (deploy/slurm/*.sbatch); sourced, not run.
#
# One job = one olmo-coordinator + one worker group of TP x PP ranks:
#   - the coordinator runs in the batch script itself, i.e. on the first node of the allocation
#     (Slurm heterogeneous jobs never start on a single node, see DESIGN.md section 8), binds port
#     0 (or CLIENT_PORT) and writes its addresses to a job-private directory;
#   - the workers are one `srun --mpi=pmix` step, one task per GPU (per CPU rank on the CPU demo),
#     TP inside a node, PP across nodes (block distribution: ranks 0..TP-1 = stage 0 on node 1);
#   - the script waits until `olmo-cli health` says SERVING, writes the endpoint to
#     $RUN_DIR/endpoint and prints it;
#   - SIGTERM (scancel, or the time limit), SIGINT and SIGUSR1 (`#SBATCH --signal=B:USR1@120`)
#     drain: the coordinator stops admitting, finishes in-flight requests for up to DRAIN_SECONDS,
#     then sends Shutdown to the group. Workers defer SIGTERM until that Shutdown or until
#     TERM_GRACE_SECONDS pass. Both must end before Slurm's KillWait (SIGKILL), so
#     DRAIN_SECONDS < TERM_GRACE_SECONDS < KillWait (checked against `scontrol show config`);
#   - a worker step that fails is relaunched (ON_WORKER_FAILURE=relaunch, up to MAX_RELAUNCHES
#     times) while the coordinator keeps every request, or the job is requeued
#     (ON_WORKER_FAILURE=requeue, `scontrol requeue`, up to MAX_REQUEUES times).
#
# Parameters (environment; sbatch passes the submitter's environment to the job):
#   MODEL              checkpoint directory (on a file system every node sees)
#   NODES, GPUS_PER_NODE   taken from the allocation inside a job; defaults for DRY_RUN
#   TP, PP             tensor / pipeline parallel sizes (default: TP = GPUs per node, PP = nodes)
#   CLIENT_PORT        client API port (0 = any free port; default 0)
#   CONTROL_PORT       worker control port (default 0)
#   CLIENT_HOST, CONTROL_HOST  addresses to bind. Default: 127.0.0.1 on one node (only that node
#                      can connect), the first node's IP on several nodes (the workers there must
#                      reach the control port). Both are protected by a per-job secret.
#   OLMO_BIN_DIR       where the binaries are: DIR/<name>/<name> (a build tree's tools/) or
#                      DIR/<name> (an install); default <repo>/build/tools, then PATH
#   OLMO_RUN_DIR       job-private directory (default $SLURM_SUBMIT_DIR/.olmo-$SLURM_JOB_ID)
#   DRAIN_SECONDS      drain time on SIGTERM (default 20)
#   TERM_GRACE_SECONDS workers' SIGTERM grace (default DRAIN_SECONDS + 5)
#   ON_WORKER_FAILURE  relaunch (default) | requeue | fail
#   MAX_RELAUNCHES     (default 3)   MAX_REQUEUES (default 3)
#   HEALTH_TIMEOUT     seconds to wait for SERVING (default 900 on GPUs, 300 on CPU)
#   CPUS_PER_TASK      GPU only: CPUs per rank (default: the node's CPUs / ranks per node)
#   KV_CACHE_MIB       CPU only: KV cache MiB per rank (default 64)
#   COORDINATOR_CONFIG JSON config file for the coordinator (--config)
#   COORDINATOR_ARGS, WORKER_ARGS  extra arguments (split on spaces)
#   DRY_RUN=1          print the resolved plan and commands and exit 0 (works outside Slurm)
# Partition: `sbatch -p NAME` or SBATCH_PARTITION=NAME (sbatch reads it itself).

# ---------------------------------------------------------------------------------------------
# Small helpers

olmo_log() { echo "olmo-slurm: $*" >&2; }
olmo_die() {
  echo "olmo-slurm: error: $*" >&2
  exit 1
}
# Quotes a command for printing so that it can be pasted back into a shell.
olmo_quote() {
  local out
  printf -v out '%q ' "$@"
  echo "${out% }"
}
olmo_is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

# Finds binary $1 under OLMO_BIN_DIR (build-tree or install layout) or on PATH.
olmo_bin() {
  local name=$1
  if [ -x "$OLMO_BIN_DIR/$name/$name" ]; then
    echo "$OLMO_BIN_DIR/$name/$name"
  elif [ -x "$OLMO_BIN_DIR/$name" ]; then
    echo "$OLMO_BIN_DIR/$name"
  elif command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
  else
    # Printed in DRY_RUN as the place it is expected; a real run checks existence first.
    echo "$OLMO_BIN_DIR/$name/$name"
    return 1
  fi
}

# The number at the end of a Slurm GPU count such as "8", "gpu:8" or "h100:8" ("" if none).
olmo_gpu_count() {
  local v=${1:-}
  v=${v##*:}
  olmo_is_uint "$v" && echo "$v"
  return 0
}

# KillWait in seconds from the running slurmctld ("" when unknown, e.g. outside a cluster).
olmo_killwait() {
  local v
  # Bounded: outside a cluster scontrol would retry its controller for a while.
  v=$(timeout 10 scontrol show config 2>/dev/null | awk '$1 == "KillWait" {print $3}') || true
  olmo_is_uint "${v:-}" && echo "$v"
  return 0
}

# This node's first IP address (for binding when workers on other nodes must connect).
olmo_node_ip() {
  local ip
  ip=$(hostname -I 2>/dev/null | awk '{print $1}') || true
  if [ -z "$ip" ]; then
    ip=$(getent ahostsv4 "$(hostname)" 2>/dev/null | awk '{print $1; exit}') || true
  fi
  [ -n "$ip" ] || olmo_die "cannot find this node's IP address; set CONTROL_HOST and CLIENT_HOST"
  echo "$ip"
}

# ---------------------------------------------------------------------------------------------
# Resolution of every parameter. The calling .sbatch sets OLMO_SCRIPT, OLMO_DEVICE (gpu|cpu) and
# the OLMO_DEFAULT_* values before calling olmo_main.

olmo_resolve() {
  OLMO_ROOT=${OLMO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
  OLMO_BIN_DIR=${OLMO_BIN_DIR:-$OLMO_ROOT/build/tools}
  DRY_RUN=${DRY_RUN:-0}

  # Outside an allocation (DRY_RUN): fake the SLURM_* values from the script's defaults.
  OLMO_FAKE_SLURM=0
  if [ -z "${SLURM_JOB_ID:-}" ]; then
    [ "$DRY_RUN" = 1 ] || olmo_die "not inside a Slurm job: submit with sbatch (or set DRY_RUN=1)"
    OLMO_FAKE_SLURM=1
    local n=${NODES:-$OLMO_DEFAULT_NODES} i hosts=()
    for ((i = 1; i <= n; i++)); do hosts+=("node$i"); done
    OLMO_JOB_ID=DRYRUN
    OLMO_HOSTS=("${hosts[@]}")
    OLMO_SUBMIT_DIR=$PWD
    OLMO_ALLOC_GPUS=""
  else
    OLMO_JOB_ID=$SLURM_JOB_ID
    mapfile -t OLMO_HOSTS < <(scontrol show hostnames "${SLURM_JOB_NODELIST:?}")
    [ ${#OLMO_HOSTS[@]} -gt 0 ] || olmo_die "cannot expand SLURM_JOB_NODELIST=$SLURM_JOB_NODELIST"
    OLMO_SUBMIT_DIR=${SLURM_SUBMIT_DIR:-$PWD}
    OLMO_ALLOC_GPUS=$(olmo_gpu_count "${SLURM_GPUS_ON_NODE:-}")
    [ -n "$OLMO_ALLOC_GPUS" ] || OLMO_ALLOC_GPUS=$(olmo_gpu_count "${SLURM_GPUS_PER_NODE:-}")
    if [ -n "${NODES:-}" ] && [ "$NODES" != "${#OLMO_HOSTS[@]}" ]; then
      olmo_log "warning: NODES=$NODES but the allocation has ${#OLMO_HOSTS[@]} nodes: using the allocation"
    fi
  fi
  NODES=${#OLMO_HOSTS[@]}
  OLMO_FIRST_HOST=${OLMO_HOSTS[0]}

  if [ "$OLMO_DEVICE" = gpu ]; then
    GPUS_PER_NODE=${OLMO_ALLOC_GPUS:-${GPUS_PER_NODE:-$OLMO_DEFAULT_GPUS_PER_NODE}}
    if ! olmo_is_uint "$GPUS_PER_NODE" || [ "$GPUS_PER_NODE" -eq 0 ]; then
      olmo_die "GPUS_PER_NODE=$GPUS_PER_NODE: request GPUs (--gpus-per-node) for $OLMO_SCRIPT"
    fi
    TP=${TP:-${OLMO_DEFAULT_TP:-$GPUS_PER_NODE}}
  else
    GPUS_PER_NODE=0
    TP=${TP:-$OLMO_DEFAULT_TP}
  fi
  PP=${PP:-${OLMO_DEFAULT_PP:-$NODES}}
  local v
  for v in TP PP; do
    if ! olmo_is_uint "${!v}" || [ "${!v}" -eq 0 ]; then
      olmo_die "$v=${!v} is not a positive integer"
    fi
  done
  OLMO_RANKS=$((TP * PP))
  # TP inside a node, PP across nodes: every node holds whole pipeline stages.
  ((OLMO_RANKS % NODES == 0)) ||
    olmo_die "tp $TP x pp $PP = $OLMO_RANKS ranks do not divide evenly over $NODES nodes"
  OLMO_RANKS_PER_NODE=$((OLMO_RANKS / NODES))
  ((OLMO_RANKS_PER_NODE % TP == 0)) ||
    olmo_die "tp $TP does not fit inside a node ($OLMO_RANKS_PER_NODE ranks per node): TP must stay inside a node; raise PP or lower TP"
  if [ "$OLMO_DEVICE" = gpu ] && ((OLMO_RANKS_PER_NODE > GPUS_PER_NODE)); then
    olmo_die "$OLMO_RANKS_PER_NODE ranks per node (tp $TP x pp $PP over $NODES nodes) but only $GPUS_PER_NODE GPUs per node"
  fi

  if [ -z "${CPUS_PER_TASK:-}" ] && [ "$OLMO_DEVICE" = gpu ]; then
    CPUS_PER_TASK=${SLURM_CPUS_PER_TASK:-}
    if [ -z "$CPUS_PER_TASK" ] && olmo_is_uint "${SLURM_CPUS_ON_NODE:-}"; then
      CPUS_PER_TASK=$((SLURM_CPUS_ON_NODE / OLMO_RANKS_PER_NODE))
      ((CPUS_PER_TASK > 0)) || CPUS_PER_TASK=1
    fi
  fi
  CPUS_PER_TASK=${CPUS_PER_TASK:-}

  CLIENT_PORT=${CLIENT_PORT:-0}
  CONTROL_PORT=${CONTROL_PORT:-0}
  olmo_is_uint "$CLIENT_PORT" || olmo_die "CLIENT_PORT=$CLIENT_PORT is not a port number"
  olmo_is_uint "$CONTROL_PORT" || olmo_die "CONTROL_PORT=$CONTROL_PORT is not a port number"
  if [ -z "${CONTROL_HOST:-}" ] || [ -z "${CLIENT_HOST:-}" ]; then
    local auto=127.0.0.1
    if ((NODES > 1)); then
      if [ "$OLMO_FAKE_SLURM" = 1 ]; then auto="<ip-of-$OLMO_FIRST_HOST>"; else auto=$(olmo_node_ip); fi
    fi
    CONTROL_HOST=${CONTROL_HOST:-$auto}
    CLIENT_HOST=${CLIENT_HOST:-$auto}
  fi

  OLMO_RUN_DIR=${OLMO_RUN_DIR:-$OLMO_SUBMIT_DIR/.olmo-$OLMO_JOB_ID}
  ON_WORKER_FAILURE=${ON_WORKER_FAILURE:-relaunch}
  case "$ON_WORKER_FAILURE" in relaunch | requeue | fail) ;; *)
    olmo_die "ON_WORKER_FAILURE=$ON_WORKER_FAILURE: use relaunch, requeue or fail" ;;
  esac
  MAX_RELAUNCHES=${MAX_RELAUNCHES:-3}
  MAX_REQUEUES=${MAX_REQUEUES:-3}
  if [ "$OLMO_DEVICE" = gpu ]; then HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-900}; else HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-300}; fi
  KV_CACHE_MIB=${KV_CACHE_MIB:-64}

  # Drain and grace must end before Slurm's SIGKILL (KillWait after SIGTERM).
  DRAIN_SECONDS=${DRAIN_SECONDS:-20}
  TERM_GRACE_SECONDS=${TERM_GRACE_SECONDS:-$((DRAIN_SECONDS + 5))}
  olmo_is_uint "$DRAIN_SECONDS" || olmo_die "DRAIN_SECONDS=$DRAIN_SECONDS is not a whole number"
  olmo_is_uint "$TERM_GRACE_SECONDS" || olmo_die "TERM_GRACE_SECONDS=$TERM_GRACE_SECONDS is not a whole number"
  OLMO_KILLWAIT=$(olmo_killwait)
  if [ -n "$OLMO_KILLWAIT" ] && ((TERM_GRACE_SECONDS >= OLMO_KILLWAIT)); then
    local grace=$((OLMO_KILLWAIT > 4 ? OLMO_KILLWAIT - 3 : 1))
    local drain=$((DRAIN_SECONDS < grace - 2 ? DRAIN_SECONDS : (grace > 3 ? grace - 3 : 0)))
    olmo_log "warning: KillWait is ${OLMO_KILLWAIT} s: TERM_GRACE_SECONDS $TERM_GRACE_SECONDS -> $grace, DRAIN_SECONDS $DRAIN_SECONDS -> $drain (raise KillWait in slurm.conf for a longer drain)"
    TERM_GRACE_SECONDS=$grace
    DRAIN_SECONDS=$drain
  fi
  ((DRAIN_SECONDS < TERM_GRACE_SECONDS)) ||
    olmo_log "warning: DRAIN_SECONDS ($DRAIN_SECONDS) >= TERM_GRACE_SECONDS ($TERM_GRACE_SECONDS): workers may leave before the drain ends"

  if [ -z "${MODEL:-}" ]; then
    if [ "$OLMO_DEVICE" = cpu ]; then
      MODEL=${DEMO_MODEL:-$OLMO_ROOT/demo-model}
    else
      [ "$DRY_RUN" = 1 ] || olmo_die "set MODEL to the checkpoint directory (MODEL=/path sbatch $OLMO_SCRIPT.sbatch)"
      MODEL="<MODEL>"
    fi
  fi

  OLMO_COORD_BIN=$(olmo_bin olmo-coordinator) || true
  OLMO_WORKER_BIN=$(olmo_bin olmo-worker) || true
  OLMO_CLI_BIN=$(olmo_bin olmo-cli) || true
  OLMO_ADDR_FILE=$OLMO_RUN_DIR/address.json
  OLMO_SECRET_FILE=$OLMO_RUN_DIR/secret
  OLMO_ENDPOINT_FILE=$OLMO_RUN_DIR/endpoint
}

# The coordinator's command line (array OLMO_COORD_CMD).
olmo_build_coordinator_cmd() {
  OLMO_COORD_CMD=("$OLMO_COORD_BIN" --model "$MODEL"
    --listen "$CLIENT_HOST:$CLIENT_PORT" --control-listen "$CONTROL_HOST:$CONTROL_PORT"
    --address-file "$OLMO_ADDR_FILE" --secret-file "$OLMO_SECRET_FILE"
    --drain-seconds "$DRAIN_SECONDS")
  [ "$OLMO_DEVICE" = cpu ] && OLMO_COORD_CMD+=(--kv-cache-mib "$KV_CACHE_MIB")
  [ -n "${COORDINATOR_CONFIG:-}" ] && OLMO_COORD_CMD+=(--config "$COORDINATOR_CONFIG")
  if [ -n "${COORDINATOR_ARGS:-}" ]; then
    local extra
    read -ra extra <<<"$COORDINATOR_ARGS"
    OLMO_COORD_CMD+=("${extra[@]}")
  fi
  return 0
}

# The worker step's command line for launch attempt $1 (array OLMO_WORKER_CMD).
olmo_build_worker_cmd() {
  local attempt=$1
  OLMO_WORKER_CMD=(srun --mpi=pmix --job-name="olmo-workers-$attempt"
    --nodes="$NODES" --ntasks="$OLMO_RANKS" --ntasks-per-node="$OLMO_RANKS_PER_NODE"
    --distribution=block --kill-on-bad-exit=1 --label)
  if [ "$OLMO_DEVICE" = gpu ]; then
    # Every rank of a node sees all of the node's GPUs and takes the one of its local rank
    # (olmo-worker --device cuda). Not --gpus-per-task=1: with cgroup device constraints a rank
    # that sees only its own GPU cannot open its peers', and NCCL loses NVLink P2P between the
    # ranks of a TP group. CPUs: a share of the node (srun no longer inherits sbatch's
    # --cpus-per-task in newer Slurm, and with cgroups a rank would otherwise get one core).
    OLMO_WORKER_CMD+=(--gpus-per-node="$GPUS_PER_NODE" --gpu-bind=none)
    [ -z "$CPUS_PER_TASK" ] || OLMO_WORKER_CMD+=(--cpus-per-task="$CPUS_PER_TASK")
  else
    # CPU ranks share cores: no binding (several ranks would be pinned to one core), and more
    # ranks than allocated CPUs is allowed (without --overcommit such a step pends forever).
    OLMO_WORKER_CMD+=(--cpu-bind=none --overcommit)
  fi
  # GPU scripts run the CUDA backend unless WORKER_DEVICE says otherwise (the test cluster's fake
  # GPUs have no CUDA device: its e2e sets WORKER_DEVICE=cpu).
  local device=${WORKER_DEVICE:-cpu}
  if [ -z "${WORKER_DEVICE:-}" ] && [ "$OLMO_DEVICE" = gpu ]; then device=cuda; fi
  OLMO_WORKER_CMD+=("$OLMO_WORKER_BIN" --model "$MODEL" --tp "$TP" --pp "$PP" --device "$device"
    --coordinator-file "$OLMO_ADDR_FILE" --secret-file "$OLMO_SECRET_FILE"
    --group-name "slurm-$OLMO_JOB_ID-$attempt" --term-grace-seconds "$TERM_GRACE_SECONDS")
  if [ -n "${WORKER_ARGS:-}" ]; then
    local extra
    read -ra extra <<<"$WORKER_ARGS"
    OLMO_WORKER_CMD+=("${extra[@]}")
  fi
  return 0
}

olmo_print_plan() {
  local hosts
  hosts=$(
    IFS=,
    echo "${OLMO_HOSTS[*]}"
  )
  olmo_log "script=$OLMO_SCRIPT job=$OLMO_JOB_ID device=$OLMO_DEVICE nodes=$NODES hosts=$hosts gpus_per_node=$GPUS_PER_NODE"
  olmo_log "tp=$TP pp=$PP ranks=$OLMO_RANKS ranks_per_node=$OLMO_RANKS_PER_NODE (TP inside a node, pipeline stages $((OLMO_RANKS_PER_NODE / TP)) per node)"
  olmo_log "model=$MODEL run_dir=$OLMO_RUN_DIR"
  olmo_log "client=$CLIENT_HOST:$CLIENT_PORT control=$CONTROL_HOST:$CONTROL_PORT (port 0 = any free port; the bound ones go to $OLMO_ADDR_FILE)"
  olmo_log "drain_seconds=$DRAIN_SECONDS term_grace_seconds=$TERM_GRACE_SECONDS killwait=${OLMO_KILLWAIT:-unknown} on_worker_failure=$ON_WORKER_FAILURE"
  olmo_build_coordinator_cmd
  olmo_build_worker_cmd 0
  olmo_log "coordinator (on $OLMO_FIRST_HOST): $(olmo_quote "${OLMO_COORD_CMD[@]}")"
  olmo_log "workers: $(olmo_quote "${OLMO_WORKER_CMD[@]}")"
  [ "$OLMO_DEVICE" = cpu ] && olmo_log "env: OMPI_MCA_mpi_yield_when_idle=1"
  return 0
}

# ---------------------------------------------------------------------------------------------
# The run

OLMO_STOP=""
OLMO_COORD_PID=""
OLMO_WORKERS_PID=""

olmo_on_signal() {
  # Only record it: the main loop (woken because `wait` returns on a trapped signal) drains.
  [ -n "$OLMO_STOP" ] || OLMO_STOP=$1
}

olmo_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# Sleeps $1 seconds in a way a trapped signal interrupts at once.
olmo_sleep() {
  sleep "$1" &
  wait $! 2>/dev/null || true
}

# Waits up to $2 s for process $1 to exit; returns 1 if it is still alive.
olmo_wait_exit() {
  local pid=$1 limit=$2 t=0
  while olmo_alive "$pid" && ((t < limit * 5)); do
    sleep 0.2
    t=$((t + 1))
  done
  ! olmo_alive "$pid"
}

olmo_check_runnable() {
  local b
  for b in "$OLMO_COORD_BIN" "$OLMO_WORKER_BIN" "$OLMO_CLI_BIN"; do
    [ -x "$b" ] || olmo_die "binary not found: $b (build it, or set OLMO_BIN_DIR)"
  done
  command -v srun >/dev/null || olmo_die "srun not found on PATH"
  [ -f "$MODEL/config.json" ] || olmo_die "MODEL=$MODEL has no config.json"
}

# CPU demo: creates the tiny demo checkpoint (random weights, real Olmo 3 tokenizer) if missing,
# with the same make-tiny invocation as deploy/local/demo.sh; built beside and renamed into place
# so that two jobs never see half a checkpoint.
olmo_ensure_demo_model() {
  [ -f "$MODEL/config.json" ] && [ -f "$MODEL/tokenizer.json" ] && return 0
  local make_tiny tmp
  make_tiny=$(olmo_bin make-tiny) || olmo_die "make-tiny not found under $OLMO_BIN_DIR (needed to create $MODEL)"
  tmp="$MODEL.tmp.$$"
  olmo_log "creating the tiny demo checkpoint in $MODEL"
  mkdir -p "$(dirname "$MODEL")"
  "$make_tiny" --preset tiny-demo --out "$tmp" \
    --tokenizer "$OLMO_ROOT/tests/data/tokenizer/olmo3_instruct.tokenizer.json" \
    --chat-template "$OLMO_ROOT/tests/data/tokenizer/chat_templates/olmo_instruct.jinja" >&2 ||
    olmo_die "make-tiny failed creating $MODEL"
  if ! mv -T "$tmp" "$MODEL" 2>/dev/null; then
    rm -rf "$tmp" # another job made it first
    [ -f "$MODEL/config.json" ] || olmo_die "cannot move $tmp to $MODEL"
  fi
}

olmo_start_coordinator() {
  rm -f "$OLMO_ADDR_FILE" "$OLMO_ENDPOINT_FILE"
  olmo_build_coordinator_cmd
  olmo_log "starting the coordinator on $(hostname -s): $(olmo_quote "${OLMO_COORD_CMD[@]}")"
  "${OLMO_COORD_CMD[@]}" >>"$OLMO_RUN_DIR/coordinator.log" 2>&1 &
  OLMO_COORD_PID=$!
  local t=0
  while [ ! -s "$OLMO_ADDR_FILE" ]; do
    olmo_alive "$OLMO_COORD_PID" || olmo_fail "the coordinator exited before listening"
    [ -z "$OLMO_STOP" ] || return 0
    ((t < 600)) || olmo_fail "the coordinator wrote no $OLMO_ADDR_FILE in 120 s"
    sleep 0.2
    t=$((t + 1))
  done
  olmo_log "coordinator (pid $OLMO_COORD_PID): $(cat "$OLMO_ADDR_FILE")"
}

olmo_launch_workers() {
  local attempt=$1
  olmo_build_worker_cmd "$attempt"
  local log
  log=$(olmo_workers_log "$attempt")
  olmo_log "starting worker group attempt $attempt: $(olmo_quote "${OLMO_WORKER_CMD[@]}") > $log"
  "${OLMO_WORKER_CMD[@]}" >"$log" 2>&1 &
  OLMO_WORKERS_PID=$!
}

# The worker step's log for launch attempt $1; a requeued job (same job id, same directory) starts
# new files instead of overwriting the evidence of the previous run.
olmo_workers_log() {
  echo "$OLMO_RUN_DIR/workers${SLURM_RESTART_COUNT:+.restart$SLURM_RESTART_COUNT}.$1.log"
}

# When a rank of the worker step died (srun logs "srun: error: HOST: task N: Killed" or "Exited
# with exit code"), the surviving ranks get SIGTERM from --kill-on-bad-exit, but they defer it
# for TERM_GRACE_SECONDS and may sit in a collective with a dead peer. Kill the step at once so
# the relaunch does not wait for that grace.
olmo_kill_broken_step() {
  local log step
  log=$(olmo_workers_log "$OLMO_ATTEMPT")
  grep -Eq '^srun: error: [^:]+: tasks? [0-9,-]+: ' "$log" 2>/dev/null || return 0
  step=$(squeue -h -s -j "$OLMO_JOB_ID" -o '%i %j' 2>/dev/null |
    awk -v n="olmo-workers-$OLMO_ATTEMPT" '$2 == n {print $1; exit}') || true
  [ -n "$step" ] || return 0
  [ "$step" = "${OLMO_KILLED_STEP:-}" ] || olmo_log "a rank of worker step $step failed: SIGKILL to the step"
  OLMO_KILLED_STEP=$step
  scancel --signal=KILL "$step" 2>/dev/null || true
}

# The client address the coordinator bound (from its address file).
olmo_client_address() {
  sed -n 's/.*"client" *: *"\([^"]*\)".*/\1/p' "$OLMO_ADDR_FILE"
}

olmo_tail_logs() {
  local f
  for f in "$OLMO_RUN_DIR"/coordinator.log "$OLMO_RUN_DIR"/workers.*.log; do
    [ -f "$f" ] || continue
    echo "----- last lines of $f -----" >&2
    tail -n 30 "$f" >&2 || true
  done
}

# Stops everything (drain first) and exits with $1.
olmo_shutdown() {
  local rc=$1
  rm -f "$OLMO_ENDPOINT_FILE"
  if olmo_alive "$OLMO_COORD_PID"; then
    olmo_log "draining: SIGTERM to the coordinator (drain up to $DRAIN_SECONDS s, then Shutdown to the workers)"
    kill -TERM "$OLMO_COORD_PID" 2>/dev/null || true
    # Drain, then 2 s client and 3 s control server shutdown in the coordinator.
    if ! olmo_wait_exit "$OLMO_COORD_PID" $((DRAIN_SECONDS + 10)); then
      olmo_log "the coordinator did not exit after $((DRAIN_SECONDS + 10)) s: SIGKILL"
      kill -KILL "$OLMO_COORD_PID" 2>/dev/null || true
    fi
  fi
  local crc=0
  if [ -n "$OLMO_COORD_PID" ]; then
    wait "$OLMO_COORD_PID" 2>/dev/null || crc=$?
    olmo_log "coordinator exited (rc $crc)"
  fi
  if olmo_alive "$OLMO_WORKERS_PID"; then
    # Shutdown reaches them as the coordinator stops; a broken stream or their grace ends them.
    if ! olmo_wait_exit "$OLMO_WORKERS_PID" $((TERM_GRACE_SECONDS + 5)); then
      olmo_log "the worker step is still running: SIGTERM, then SIGKILL to its srun"
      kill -TERM "$OLMO_WORKERS_PID" 2>/dev/null || true
      olmo_wait_exit "$OLMO_WORKERS_PID" 5 || kill -KILL "$OLMO_WORKERS_PID" 2>/dev/null || true
    fi
  fi
  local wrc=0
  if [ -n "$OLMO_WORKERS_PID" ]; then
    wait "$OLMO_WORKERS_PID" 2>/dev/null || wrc=$?
    olmo_log "worker step exited (rc $wrc)"
  fi
  rm -f "$OLMO_SECRET_FILE" "$OLMO_ADDR_FILE"
  [ "$rc" -eq 0 ] || olmo_tail_logs
  olmo_log "stopped (rc $rc); logs in $OLMO_RUN_DIR"
  exit "$rc"
}

olmo_fail() {
  echo "olmo-slurm: error: $*" >&2
  olmo_shutdown 1
}

# A worker step ended while serving: relaunch it, requeue the job, or fail.
olmo_on_worker_exit() {
  local rc=$1
  olmo_log "the worker step exited with rc $rc while serving (see $(olmo_workers_log "$OLMO_ATTEMPT"))"
  tail -n 20 "$(olmo_workers_log "$OLMO_ATTEMPT")" >&2 2>/dev/null || true
  case "$ON_WORKER_FAILURE" in
    relaunch)
      ((OLMO_ATTEMPT < MAX_RELAUNCHES)) ||
        olmo_fail "the worker step failed $((OLMO_ATTEMPT + 1)) times (MAX_RELAUNCHES=$MAX_RELAUNCHES)"
      # The coordinator keeps every request and re-queues them when a group attaches again.
      olmo_sleep 5
      [ -z "$OLMO_STOP" ] || return 0
      OLMO_ATTEMPT=$((OLMO_ATTEMPT + 1))
      olmo_launch_workers "$OLMO_ATTEMPT"
      OLMO_HEALTH_START=$SECONDS
      ;;
    requeue)
      local restarts=${SLURM_RESTART_COUNT:-0}
      ((restarts < MAX_REQUEUES)) ||
        olmo_fail "the job was already requeued $restarts times (MAX_REQUEUES=$MAX_REQUEUES)"
      olmo_log "requeueing job $OLMO_JOB_ID (restart $((restarts + 1)) of $MAX_REQUEUES)"
      # Slurm now signals this job (SIGTERM: our drain) and puts it back in the queue.
      scontrol requeue "$OLMO_JOB_ID" ||
        olmo_fail "scontrol requeue $OLMO_JOB_ID failed (is the job requeueable? JobRequeue / --requeue)"
      OLMO_STOP=requeue
      ;;
    *) olmo_fail "the worker step failed (ON_WORKER_FAILURE=fail)" ;;
  esac
}

olmo_run() {
  olmo_check_runnable
  if [ "$OLMO_DEVICE" = cpu ]; then
    # Slurm declares more CPUs than cores here: without yielding, waiting MPI ranks busy-poll and
    # small collectives get ~200x slower (docs/stack.md section 3).
    export OMPI_MCA_mpi_yield_when_idle=1
  fi
  if [ "$(hostname -s)" != "${OLMO_FIRST_HOST%%.*}" ]; then
    olmo_log "warning: the batch script runs on $(hostname -s), not on the first node $OLMO_FIRST_HOST"
  fi
  mkdir -p "$OLMO_RUN_DIR" || olmo_die "cannot create $OLMO_RUN_DIR"
  # A fresh secret per run: workers must present it to attach; only the job's user can read it.
  (
    umask 077
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$OLMO_SECRET_FILE"
  ) || olmo_die "cannot write $OLMO_SECRET_FILE"

  trap 'olmo_on_signal TERM' TERM
  trap 'olmo_on_signal INT' INT
  trap 'olmo_on_signal USR1' USR1

  olmo_start_coordinator
  [ -z "$OLMO_STOP" ] || olmo_shutdown 0
  OLMO_ATTEMPT=0
  olmo_launch_workers "$OLMO_ATTEMPT"
  OLMO_HEALTH_START=$SECONDS
  local serving=0 client rc
  client=$(olmo_client_address)
  [ -n "$client" ] || olmo_fail "no client address in $OLMO_ADDR_FILE"

  while [ -z "$OLMO_STOP" ]; do
    if ! olmo_alive "$OLMO_COORD_PID"; then
      rc=0
      wait "$OLMO_COORD_PID" || rc=$?
      OLMO_COORD_PID=""
      olmo_fail "the coordinator exited unexpectedly (rc $rc); see $OLMO_RUN_DIR/coordinator.log"
    fi
    if ! olmo_alive "$OLMO_WORKERS_PID"; then
      rc=0
      wait "$OLMO_WORKERS_PID" || rc=$?
      OLMO_WORKERS_PID=""
      [ -n "$OLMO_STOP" ] && break
      serving=0
      rm -f "$OLMO_ENDPOINT_FILE"
      olmo_on_worker_exit "$rc"
      continue
    fi
    olmo_kill_broken_step
    if [ "$serving" = 0 ]; then
      if "$OLMO_CLI_BIN" --server "$client" --timeout-s 5 health >/dev/null 2>&1; then
        serving=1
        echo "$client" >"$OLMO_ENDPOINT_FILE.tmp" && mv "$OLMO_ENDPOINT_FILE.tmp" "$OLMO_ENDPOINT_FILE"
        olmo_log "SERVING on $client after $((SECONDS - OLMO_HEALTH_START)) s (endpoint in $OLMO_ENDPOINT_FILE)"
        olmo_log "try: $(olmo_quote "$OLMO_CLI_BIN" --server "$client" generate "The capital of France is" --max-tokens 16)"
      elif ((SECONDS - OLMO_HEALTH_START > HEALTH_TIMEOUT)); then
        olmo_fail "not SERVING after $HEALTH_TIMEOUT s (HEALTH_TIMEOUT)"
      fi
    fi
    olmo_sleep 1
  done
  olmo_log "got $OLMO_STOP: stopping"
  olmo_shutdown 0
}

olmo_main() {
  olmo_resolve
  if [ "$DRY_RUN" = 1 ]; then
    olmo_print_plan
    olmo_log "DRY_RUN=1: nothing launched"
    return 0
  fi
  olmo_print_plan
  [ "$OLMO_DEVICE" = cpu ] && olmo_ensure_demo_model
  olmo_run
}
