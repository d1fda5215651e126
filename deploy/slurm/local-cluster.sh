#!/usr/bin/env bash
# A throw-away single-node Slurm 22.05 cluster on this machine, as root: munged + slurmctld +
# slurmd, everything (config, key, state, spool, logs, pid files, munge socket) in one private
# directory, so /etc/slurm, /etc/munge and /run/munge are neither needed nor touched and several
# such clusters (on different ports) can coexist.
#
#   bash deploy/slurm/local-cluster.sh start     # prints the SLURM_CONF line to export
#   bash deploy/slurm/local-cluster.sh status
#   bash deploy/slurm/local-cluster.sh stop      # cancels jobs, stops the daemons by PID
#   eval "$(bash deploy/slurm/local-cluster.sh env)"   # export SLURM_CONF for sinfo/sbatch/srun
#
# Every Slurm client (sinfo, sbatch, srun, scancel, scontrol) must see SLURM_CONF pointing at the
# private slurm.conf; sbatch passes the submitter's environment to the job, so srun inside jobs
# sees it too. The daemons get it with -f.
#
# Settings (environment):
#   OLMO_SLURM_DIR        private directory (default /var/tmp/olmo-slurm)
#   OLMO_SLURM_CPUS       CPUs the node declares (default 4; may exceed the real cores:
#                         SlurmdParameters=config_overrides makes slurmd accept it)
#   OLMO_SLURMCTLD_PORT   slurmctld port (default 6817)
#   OLMO_SLURMD_PORT      slurmd port (default 6818)
#   OLMO_SLURM_KILLWAIT   KillWait seconds (default 30): time between scancel's SIGTERM and
#                         SIGKILL. Olmo's drain (DRAIN_SECONDS) and the workers' SIGTERM grace
#                         (TERM_GRACE_SECONDS) must fit inside it; see deploy/slurm/README.md.
#   OLMO_SLURM_FAKE_GPU_NODES  N > 0: also declare N fake nodes gpu[1-N] with Gres=gpu:8 in a
#                         partition "gpu" (no slurmd runs for them; for `sbatch --test-only`)
#   OLMO_SLURM_NO_SLURMD  1: start munged + slurmctld only (enough for --test-only)
#   OLMO_SLURM_FAKE_LOCAL_GPUS  N in 1..4: this node declares Gres=gpu:N backed by /dev/null,
#                         /dev/zero, /dev/full, /dev/urandom (no GPU: only so that the GPU batch
#                         scripts' `srun --gpus-per-node` lines can run here). Never on a machine with real GPUs.
#
# Known facts this follows (docs/stack.md section 4): munged refuses to run as root ("Logfile is
# insecure"), so it runs as the munge user on files it owns; Debian's Open MPI only speaks PMIx
# (MpiDefault=pmix); no cgroups in this VM (proctrack/linuxproc, task/none).
set -euo pipefail

STATE_DIR="${OLMO_SLURM_DIR:-/var/tmp/olmo-slurm}"
CPUS="${OLMO_SLURM_CPUS:-4}"
CTLD_PORT="${OLMO_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${OLMO_SLURMD_PORT:-6818}"
KILL_WAIT="${OLMO_SLURM_KILLWAIT:-30}"
FAKE_GPU_NODES="${OLMO_SLURM_FAKE_GPU_NODES:-0}"
NO_SLURMD="${OLMO_SLURM_NO_SLURMD:-0}"
FAKE_LOCAL_GPUS="${OLMO_SLURM_FAKE_LOCAL_GPUS:-0}"
CONF="$STATE_DIR/slurm.conf"
MUNGE_DIR="$STATE_DIR/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"
PID_DIR="$STATE_DIR/run"
LOG_DIR="$STATE_DIR/log"

log() { echo "local-cluster: $*" >&2; }
die() { echo "local-cluster: error: $*" >&2; exit 1; }

# The daemons this script owns, in stop order, as "name pidfile".
daemons() {
  echo "slurmd $PID_DIR/slurmd.pid"
  echo "slurmctld $PID_DIR/slurmctld.pid"
  echo "munged $MUNGE_DIR/munged.pid"
}

# Prints the PID recorded in pidfile $2 if that process is alive and really is daemon $1 started
# on our private files (a recycled PID must never be killed).
live_pid() {
  local name=$1 pidfile=$2 pid cmd
  [ -s "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  [[ "$cmd" == *"$name"* && "$cmd" == *"$STATE_DIR"* ]] || return 1
  echo "$pid"
}

check_tools() {
  local t missing=()
  for t in munged mungekey munge unmunge slurmctld slurmd sinfo scontrol squeue scancel; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  [ ${#missing[@]} -eq 0 ] ||
    die "missing ${missing[*]}: run deploy/slurm/install-slurm.sh first"
  [ "$(id -u)" -eq 0 ] || die "must run as root (slurmd and munged need it)"
  id munge >/dev/null 2>&1 || die "no 'munge' user: is the munge package installed?"
}

# Fails naming the port when something already listens on TCP port $1.
check_port_free() {
  local port=$1 what=$2
  if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
    die "port $port ($what) is already in use; another Slurm may be running. Set ${3} to a free port"
  fi
}

write_conf() {
  local host
  host=$(hostname -s)
  local gpu_nodes="" local_gres="" gres_types=""
  : >"$STATE_DIR/gres.conf"
  if [ "$FAKE_LOCAL_GPUS" -gt 0 ]; then
    [ "$FAKE_LOCAL_GPUS" -le 4 ] || die "OLMO_SLURM_FAKE_LOCAL_GPUS=$FAKE_LOCAL_GPUS: at most 4"
    # slurmd checks that each GPU's File exists and is distinct; harmless char devices do.
    local dev
    for dev in /dev/null /dev/zero /dev/full /dev/urandom; do
      [ "$FAKE_LOCAL_GPUS" -gt 0 ] || break
      echo "NodeName=$host Name=gpu File=$dev" >>"$STATE_DIR/gres.conf"
      FAKE_LOCAL_GPUS=$((FAKE_LOCAL_GPUS - 1))
    done
    local_gres=" Gres=gpu:${OLMO_SLURM_FAKE_LOCAL_GPUS}"
    gres_types="GresTypes=gpu"
  fi
  if [ "$FAKE_GPU_NODES" -gt 0 ]; then
    # Fake GPU nodes for `sbatch --test-only` of the GPU scripts: slurmctld checks requests
    # against these declarations; nothing ever runs there. 64 CPUs, 8 GPUs, 1 TB like an
    # 8 x H100 node. State=CLOUD (powered-down cloud nodes, "resumed" by /bin/true): the
    # scheduler plans on them. With State=UNKNOWN (no slurmd ever answers) every --test-only
    # fails with "Requested node configuration is not available", even `-N1 --wrap true`.
    gres_types="GresTypes=gpu"
    gpu_nodes="SuspendProgram=/bin/true
ResumeProgram=/bin/true
SuspendTime=600
NodeName=gpu[1-$FAKE_GPU_NODES] NodeAddr=127.0.0.1 CPUs=64 Boards=1 SocketsPerBoard=2 CoresPerSocket=32 ThreadsPerCore=1 RealMemory=1000000 Gres=gpu:8 State=CLOUD
PartitionName=gpu Nodes=gpu[1-$FAKE_GPU_NODES] Default=NO MaxTime=INFINITE State=UP"
    # slurmctld reads gres.conf too; Count-only entries need no device files.
    echo "NodeName=gpu[1-$FAKE_GPU_NODES] Name=gpu Count=8" >>"$STATE_DIR/gres.conf"
  fi
  cat >"$CONF.tmp" <<CONF
# Written by deploy/slurm/local-cluster.sh: single-node Slurm for development and CI, as root.
ClusterName=olmo
${gres_types}
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
AuthType=auth/munge
CredType=cred/munge
# private munged (its own socket and key)
AuthInfo=socket=${MUNGE_SOCKET}
StateSaveLocation=${STATE_DIR}/state
SlurmdSpoolDir=${STATE_DIR}/spool
SlurmctldPidFile=${PID_DIR}/slurmctld.pid
SlurmdPidFile=${PID_DIR}/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups in containers/VMs: track processes by parentage
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Debian's Open MPI has only PMIx (pmi2/none fail in MPI_Init)
MpiDefault=pmix
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# declare more CPUs than the box has: slurmd must accept the config instead of the hardware
SlurmdParameters=config_overrides
SlurmdTimeout=300
InactiveLimit=0
# scancel/time limit: SIGTERM, then SIGKILL after KillWait s. Olmo's drain and the workers'
# SIGTERM grace must end inside it (DRAIN_SECONDS < TERM_GRACE_SECONDS < KillWait).
KillWait=${KILL_WAIT}
MinJobAge=300
JobRequeue=1
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${CPUS} Boards=1 SocketsPerBoard=1 CoresPerSocket=${CPUS} ThreadsPerCore=1 RealMemory=16000${local_gres} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
${gpu_nodes}
CONF
  mv "$CONF.tmp" "$CONF"
}

start_munge() {
  install -d -o munge -g munge -m 0700 "$MUNGE_DIR"
  if [ ! -s "$MUNGE_DIR/munge.key" ]; then
    mungekey --create --keyfile="$MUNGE_DIR/munge.key" >/dev/null ||
      die "mungekey --create failed"
    chown munge:munge "$MUNGE_DIR/munge.key"
    chmod 0400 "$MUNGE_DIR/munge.key"
  fi
  # Clients (slurmctld, slurmd, srun as root) must reach the socket: the directory must be
  # searchable; munged refuses a socket directory writable by others.
  chmod 0755 "$MUNGE_DIR"
  if live_pid munged "$MUNGE_DIR/munged.pid" >/dev/null; then
    log "munged already running"
  else
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    # As root munged refuses ("Logfile is insecure"): run it as the munge user.
    runuser -u munge -- munged --socket="$MUNGE_SOCKET" --key-file="$MUNGE_DIR/munge.key" \
      --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
      --seed-file="$MUNGE_DIR/munged.seed" ||
      die "munged did not start; see $MUNGE_DIR/munged.log"
  fi
  local _
  for _ in $(seq 50); do
    munge -S "$MUNGE_SOCKET" -n 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "munge -n | unmunge fails on $MUNGE_SOCKET; see $MUNGE_DIR/munged.log"
}

# Waits up to 30 s for every node of the partition "debug" to be idle (or mixed/allocated).
wait_idle() {
  local _ st
  for _ in $(seq 300); do
    st=$(sinfo -h -p debug -o %T 2>/dev/null || true)
    case "$st" in idle | mixed | allocated) return 0 ;; esac
    sleep 0.1
  done
  sinfo >&2 || true
  die "node not idle after 30 s (state '${st:-?}'); see $LOG_DIR/slurmd.log and slurmctld.log"
}

cmd_start() {
  check_tools
  export SLURM_CONF="$CONF"
  if cluster_up; then
    log "already running ($CONF)"
    echo "export SLURM_CONF=$CONF"
    return 0
  fi
  # Partly up (a daemon died): stop what is left and start fresh.
  stop_daemons
  check_port_free "$CTLD_PORT" slurmctld OLMO_SLURMCTLD_PORT
  [ "$NO_SLURMD" = 1 ] || check_port_free "$SLURMD_PORT" slurmd OLMO_SLURMD_PORT
  install -d -m 0755 "$STATE_DIR" "$STATE_DIR/state" "$STATE_DIR/spool" "$PID_DIR" "$LOG_DIR"
  write_conf
  start_munge
  # Both daemonize and write their pid files.
  slurmctld -f "$CONF" || die "slurmctld failed to start; see $LOG_DIR/slurmctld.log"
  if [ "$NO_SLURMD" != 1 ]; then
    slurmd -f "$CONF" || die "slurmd failed to start; see $LOG_DIR/slurmd.log"
    wait_idle
  else
    local _
    for _ in $(seq 300); do scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
    scontrol ping >/dev/null 2>&1 || die "slurmctld does not answer; see $LOG_DIR/slurmctld.log"
  fi
  log "up: $(sinfo -h -o '%P %D %T %N' | tr '\n' ';')"
  echo "export SLURM_CONF=$CONF"
}

# True when every daemon we need is alive and slurmctld answers.
cluster_up() {
  live_pid munged "$MUNGE_DIR/munged.pid" >/dev/null || return 1
  live_pid slurmctld "$PID_DIR/slurmctld.pid" >/dev/null || return 1
  if [ "$NO_SLURMD" != 1 ]; then
    live_pid slurmd "$PID_DIR/slurmd.pid" >/dev/null || return 1
  fi
  SLURM_CONF="$CONF" scontrol ping >/dev/null 2>&1
}

# Cancels every job of this cluster and waits (bounded by KillWait + 15 s) for them to end, so
# that no job process outlives slurmd.
cancel_jobs() {
  live_pid slurmctld "$PID_DIR/slurmctld.pid" >/dev/null || return 0
  local jobs _
  jobs=$(SLURM_CONF="$CONF" squeue -h -o %A 2>/dev/null || true)
  [ -n "$jobs" ] || return 0
  log "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
  # shellcheck disable=SC2086  # one argument per job id
  SLURM_CONF="$CONF" scancel $jobs 2>/dev/null || true
  for _ in $(seq $(((KILL_WAIT + 15) * 5))); do
    [ -z "$(SLURM_CONF="$CONF" squeue -h -o %A 2>/dev/null)" ] && return 0
    sleep 0.2
  done
  log "warning: jobs still listed after $((KILL_WAIT + 15)) s: $(SLURM_CONF="$CONF" squeue -h 2>&1)"
}

# Stops our daemons by their recorded PIDs (never by name), waiting up to 10 s for each.
stop_daemons() {
  local name pidfile pid _
  while read -r name pidfile; do
    pid=$(live_pid "$name" "$pidfile") || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name ($pid) ignored SIGTERM for 10 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name ($pid)"
  done < <(daemons)
}

cmd_stop() {
  if [ ! -d "$STATE_DIR" ]; then
    log "nothing to stop ($STATE_DIR does not exist)"
    return 0
  fi
  cancel_jobs
  stop_daemons
  # Keep the logs (and the config, for reading them); drop state so the next start is fresh.
  rm -rf "$STATE_DIR/state" "$STATE_DIR/spool" "$PID_DIR" "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  log "stopped; logs in $LOG_DIR"
}

cmd_status() {
  local name pidfile pid rc=0
  while read -r name pidfile; do
    if [ "$name" = slurmd ] && [ "$NO_SLURMD" = 1 ]; then continue; fi
    if pid=$(live_pid "$name" "$pidfile"); then
      echo "$name: running (pid $pid)"
    else
      echo "$name: not running"
      rc=1
    fi
  done < <(daemons)
  if [ "$rc" -eq 0 ]; then
    SLURM_CONF="$CONF" sinfo || rc=1
    SLURM_CONF="$CONF" squeue || rc=1
    echo "export SLURM_CONF=$CONF"
  fi
  return "$rc"
}

main() {
  case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *)
      echo "usage: $0 {start|stop|status|env}" >&2
      exit 2
      ;;
  esac
}

main "$@"
